"""Decoded forms of the on-chain accounts, as frozen dataclasses with their codecs.

Every type speaks the same codec vocabulary, so its methods carry no docstrings of their own:

- ``decode(data)`` / ``encode()``: a whole account's data (discriminator included) to and from the type;
- ``from_borsh(reader)`` / ``to_borsh()``: the Borsh form instructions carry;
- ``read_zc(data, off)`` / ``write_zc(buf, off)``: the zero-copy (``#[repr(C)]``) form inside the
  CoordinatorAccount, at absolute offsets whose defaults are where the value sits there;
- ``to_serde()``: the JSON shape Rust serde gives (externally tagged enums), for ``--json`` output.

Decoders raise AccountDecodeError naming the account type for bad input; encoders raise ValueError for a
value that does not fit its field (callers validate user input first).
"""
