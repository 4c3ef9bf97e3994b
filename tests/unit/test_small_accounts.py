"""Small Anchor accounts and SPL token accounts: golden bytes, both directions, and corrupt input."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st
from solders.pubkey import Pubkey

from psyche.chain.accounts.authorization import Authorization
from psyche.chain.accounts.instance import CoordinatorInstance
from psyche.chain.accounts.token import AccountState, Mint, TokenAccount
from psyche.chain.accounts.treasurer import Participant, TreasurerRun
from psyche.chain.programs import JOIN_RUN_AUTHORIZATION_SCOPE, PERMISSIONLESS_GRANTEE
from psyche.errors import AccountDecodeError

A = Pubkey.from_bytes(bytes([1]) * 32)
B = Pubkey.from_bytes(bytes([2]) * 32)
C = Pubkey.from_bytes(bytes([3]) * 32)
D = Pubkey.from_bytes(bytes([4]) * 32)
E = Pubkey.from_bytes(bytes([5]) * 32)
ZERO = Pubkey.from_bytes(bytes(32))
SCOPE = JOIN_RUN_AUTHORIZATION_SCOPE

pubkeys = st.binary(min_size=32, max_size=32).map(Pubkey.from_bytes)
u8s = st.integers(0, 2**8 - 1)
u64s = st.integers(0, 2**64 - 1)
i64s = st.integers(-(2**63), 2**63 - 1)


@pytest.mark.parametrize(
    ("cls", "hex_"),
    [
        (Authorization, "0344a8f3c3a8204b"),
        (CoordinatorInstance, "9c099910af181ffc"),
        (TreasurerRun, "c7369b56eb73f6bd"),
        (Participant, "208e6c4ff7b33606"),
    ],
)
def test_discriminators_match_the_spec_table(cls: type, hex_: str) -> None:
    assert cls.DISCRIMINATOR.hex() == hex_  # type: ignore[attr-defined]


# --- CoordinatorInstance ------------------------------------------------------------------------------------

INSTANCE = CoordinatorInstance(
    bump=255, main_authority=A, join_authority=B, coordinator_account=C, run_id="test"
)
INSTANCE_BYTES = (
    bytes.fromhex("9c099910af181ffc")
    + b"\xff"
    + bytes(A)
    + bytes(B)
    + bytes(C)
    + b"\x04\x00\x00\x00test"
    + bytes(60)
)


def test_instance_golden_bytes_both_directions() -> None:
    assert len(INSTANCE_BYTES) == CoordinatorInstance.SIZE == 173
    assert INSTANCE.encode() == INSTANCE_BYTES
    assert CoordinatorInstance.decode(INSTANCE_BYTES) == INSTANCE


def test_instance_run_id_of_64_bytes_fills_the_account_exactly() -> None:
    full = CoordinatorInstance(
        bump=1, main_authority=A, join_authority=A, coordinator_account=A, run_id="x" * 64
    )
    assert len(full.encode()) == 173
    assert CoordinatorInstance.decode(full.encode()).run_id == "x" * 64
    with pytest.raises(ValueError, match="65 bytes"):
        CoordinatorInstance(
            bump=1, main_authority=A, join_authority=A, coordinator_account=A, run_id="x" * 65
        ).encode()


def test_instance_wrong_discriminator_names_the_type() -> None:
    data = bytes.fromhex("ef21b1372c9b562b") + INSTANCE_BYTES[8:]
    with pytest.raises(
        AccountDecodeError, match=r"^coordinator instance account: wrong discriminator ef21b1372c9b562b"
    ):
        CoordinatorInstance.decode(data)


def test_instance_truncated_body_fails_cleanly() -> None:
    with pytest.raises(AccountDecodeError, match=r"^coordinator instance account: expected ≥"):
        CoordinatorInstance.decode(INSTANCE_BYTES[:110])
    with pytest.raises(AccountDecodeError, match="expected ≥8 bytes, got 3"):
        CoordinatorInstance.decode(INSTANCE_BYTES[:3])


def test_instance_invalid_utf8_run_id_is_a_decode_error() -> None:
    data = bytearray(INSTANCE_BYTES)
    data[109] = 0xFF
    with pytest.raises(AccountDecodeError, match="invalid UTF-8"):
        CoordinatorInstance.decode(bytes(data))


# --- Authorization ------------------------------------------------------------------------------------------

AUTH = Authorization(
    bump=254,
    grantor=A,
    grantee=ZERO,
    scope=SCOPE,
    active=True,
    delegates=(),
    grantor_update_unix_timestamp=1_700_000_000,
)
AUTH_BYTES = (
    bytes.fromhex("0344a8f3c3a8204b")
    + b"\xfe"
    + bytes(A)
    + bytes(32)
    + b"\x12\x00\x00\x00"
    + bytes.fromhex("436f6f7264696e61746f724a6f696e52756e")
    + b"\x01"
    + b"\x00\x00\x00\x00"
    + struct.pack("<q", 1_700_000_000)
)


def test_authorization_golden_bytes_join_scope_is_108_bytes() -> None:
    assert len(AUTH_BYTES) == 108
    assert AUTH.encode() == AUTH_BYTES
    assert Authorization.decode(AUTH_BYTES) == AUTH
    assert AUTH.size == 108


def test_authorization_with_delegates_has_size_90_plus_l_plus_32n() -> None:
    auth = Authorization(
        bump=1,
        grantor=A,
        grantee=B,
        scope=b"ab",
        active=False,
        delegates=(C, D),
        grantor_update_unix_timestamp=-5,
    )
    data = auth.encode()
    assert len(data) == 90 + 2 + 64 == Authorization.size_for(2, 2)
    # delegates vec: length at 78+L, keys after it; timestamp last
    assert data[80:84] == b"\x02\x00\x00\x00"
    assert data[84:116] == bytes(C)
    assert data[116:148] == bytes(D)
    assert struct.unpack_from("<q", data, 148)[0] == -5
    assert Authorization.decode(data) == auth


def test_authorization_trailing_bytes_are_ignored() -> None:
    assert Authorization.decode(AUTH_BYTES + bytes(40)) == AUTH


def test_authorization_bad_bool_and_absurd_vec_length_fail_cleanly() -> None:
    bad_bool = bytearray(AUTH_BYTES)
    bad_bool[77 + 18] = 2
    with pytest.raises(AccountDecodeError, match=r"^authorization account: invalid bool byte 2"):
        Authorization.decode(bytes(bad_bool))
    huge = bytearray(AUTH_BYTES)
    huge[78 + 18 : 82 + 18] = b"\xff\xff\xff\x7f"
    with pytest.raises(AccountDecodeError, match=r"^authorization account: vector of"):
        Authorization.decode(bytes(huge))


def test_authorization_wrong_discriminator() -> None:
    with pytest.raises(AccountDecodeError, match=r"^authorization account: wrong discriminator"):
        Authorization.decode(INSTANCE_BYTES)


def _auth(*, active: bool = True, grantee: Pubkey = B, delegates: tuple[Pubkey, ...] = ()) -> Authorization:
    return Authorization(
        bump=255,
        grantor=A,
        grantee=grantee,
        scope=SCOPE,
        active=active,
        delegates=delegates,
        grantor_update_unix_timestamp=0,
    )


@pytest.mark.parametrize(
    ("auth", "grantor", "user", "scope", "expected"),
    [
        pytest.param(_auth(), A, B, SCOPE, True, id="exact grantee"),
        pytest.param(_auth(active=False), A, B, SCOPE, False, id="inactive"),
        pytest.param(_auth(), C, B, SCOPE, False, id="wrong grantor"),
        pytest.param(_auth(), A, B, b"CoordinatorJoinRu", False, id="scope prefix"),
        pytest.param(_auth(), A, B, SCOPE + b"\x00", False, id="scope longer"),
        pytest.param(_auth(grantee=PERMISSIONLESS_GRANTEE), A, E, SCOPE, True, id="anyone"),
        pytest.param(
            _auth(grantee=PERMISSIONLESS_GRANTEE, active=False), A, E, SCOPE, False, id="anyone inactive"
        ),
        pytest.param(_auth(delegates=(C, D)), A, D, SCOPE, True, id="delegate"),
        pytest.param(_auth(delegates=(C, D), active=False), A, D, SCOPE, False, id="delegate inactive"),
        pytest.param(_auth(delegates=(C, D)), A, E, SCOPE, False, id="stranger"),
        pytest.param(_auth(), A, A, SCOPE, False, id="grantor is not grantee"),
    ],
)
def test_is_valid_for_truth_table(
    auth: Authorization, grantor: Pubkey, user: Pubkey, scope: bytes, expected: bool
) -> None:
    assert auth.is_valid_for(grantor, user, scope) is expected


# --- Treasurer Run and Participant --------------------------------------------------------------------------

RUN = TreasurerRun(
    bump=252,
    index=7313085519096743583,
    main_authority=A,
    join_authority=B,
    coordinator_account=C,
    coordinator_instance=D,
    collateral_mint=E,
    total_claimed_collateral_amount=11,
    total_claimed_earned_points=2**64 - 1,
)
RUN_BYTES = (
    bytes.fromhex("c7369b56eb73f6bd")
    + b"\xfc"
    + bytes.fromhex("9f86d081884c7d65")
    + bytes(A)
    + bytes(B)
    + bytes(C)
    + bytes(D)
    + bytes(E)
    + struct.pack("<QQ", 11, 2**64 - 1)
    + bytes(7)
)


def test_treasurer_run_golden_bytes_both_directions() -> None:
    assert len(RUN_BYTES) == TreasurerRun.SIZE == 200
    assert RUN.encode() == RUN_BYTES
    assert TreasurerRun.decode(RUN_BYTES) == RUN
    # the Borsh body alone is enough; the 7 unused bytes are not needed
    assert TreasurerRun.decode(RUN_BYTES[: TreasurerRun.DATA_SIZE]) == RUN
    with pytest.raises(AccountDecodeError, match=r"^treasurer run account: expected ≥193 bytes, got 192"):
        TreasurerRun.decode(RUN_BYTES[:192])


PARTICIPANT = Participant(bump=255, claimed_collateral_amount=42, claimed_earned_points=43)
PARTICIPANT_BYTES = bytes.fromhex("208e6c4ff7b33606") + b"\xff" + struct.pack("<QQ", 42, 43) + bytes(7)


def test_participant_golden_bytes_both_directions() -> None:
    assert len(PARTICIPANT_BYTES) == Participant.SIZE == 32
    assert PARTICIPANT.encode() == PARTICIPANT_BYTES
    assert Participant.decode(PARTICIPANT_BYTES) == PARTICIPANT
    with pytest.raises(AccountDecodeError, match=r"^treasurer participant account: wrong discriminator"):
        Participant.decode(RUN_BYTES)
    with pytest.raises(
        AccountDecodeError, match=r"^treasurer participant account: expected ≥25 bytes, got 24"
    ):
        Participant.decode(PARTICIPANT_BYTES[:24])


# --- SPL token account and mint -----------------------------------------------------------------------------

TOKEN_BYTES = (
    bytes(A)
    + bytes(B)
    + struct.pack("<Q", 1_000_000)
    + b"\x01\x00\x00\x00"
    + bytes(C)
    + b"\x01"
    + b"\x00\x00\x00\x00"
    + bytes(8)
    + struct.pack("<Q", 5)
    + b"\x01\x00\x00\x00"
    + bytes(D)
)
TOKEN = TokenAccount(
    mint=A,
    owner=B,
    amount=1_000_000,
    delegate=C,
    state=AccountState.INITIALIZED,
    delegated_amount=5,
    close_authority=D,
)


def test_token_account_golden_bytes_both_directions() -> None:
    assert len(TOKEN_BYTES) == TokenAccount.SIZE == 165
    assert TOKEN.encode() == TOKEN_BYTES
    assert TokenAccount.decode(TOKEN_BYTES) == TOKEN
    assert struct.unpack_from("<Q", TOKEN_BYTES, 64)[0] == 1_000_000
    assert TOKEN_BYTES[108] == 1


def test_token_account_defaults_encode_none_options_as_zero_tag_and_zero_payload() -> None:
    plain = TokenAccount(mint=A, owner=B, amount=7)
    data = plain.encode()
    assert len(data) == 165
    assert data[72:108] == bytes(36)
    assert data[109:121] == bytes(12)
    assert data[129:] == bytes(36)
    assert TokenAccount.decode(data) == plain
    native = TokenAccount(mint=A, owner=B, amount=7, is_native=2039280, state=AccountState.FROZEN)
    assert TokenAccount.decode(native.encode()) == native


def test_token_account_corruption_fails_cleanly() -> None:
    bad_tag = bytearray(TOKEN_BYTES)
    bad_tag[72] = 2
    with pytest.raises(AccountDecodeError, match=r"^token account: invalid COption tag 2 at offset 72"):
        TokenAccount.decode(bytes(bad_tag))
    bad_state = bytearray(TOKEN_BYTES)
    bad_state[108] = 3
    with pytest.raises(AccountDecodeError, match=r"^token account: unknown account state variant 3"):
        TokenAccount.decode(bytes(bad_state))
    with pytest.raises(AccountDecodeError, match=r"^token account: expected ≥165 bytes, got 82"):
        TokenAccount.decode(TOKEN_BYTES[:82])


def test_token_account_uninitialized_decodes_with_its_state() -> None:
    assert TokenAccount.decode(bytes(165)).state is AccountState.UNINITIALIZED


MINT_BYTES = (
    b"\x01\x00\x00\x00"
    + bytes(A)
    + struct.pack("<Q", 10**15)
    + b"\x09"
    + b"\x01"
    + b"\x00\x00\x00\x00"
    + bytes(32)
)


def test_mint_golden_bytes_both_directions() -> None:
    mint = Mint(mint_authority=A, supply=10**15, decimals=9)
    assert len(MINT_BYTES) == Mint.SIZE == 82
    assert mint.encode() == MINT_BYTES
    assert Mint.decode(MINT_BYTES) == mint
    assert MINT_BYTES[44] == 9
    assert struct.unpack_from("<Q", MINT_BYTES, 36)[0] == 10**15


def test_mint_corruption_fails_cleanly() -> None:
    bad_bool = bytearray(MINT_BYTES)
    bad_bool[45] = 7
    with pytest.raises(AccountDecodeError, match=r"^mint account: invalid bool byte 7"):
        Mint.decode(bytes(bad_bool))
    with pytest.raises(AccountDecodeError, match=r"^mint account: expected ≥82 bytes, got 81"):
        Mint.decode(MINT_BYTES[:81])


# --- properties ---------------------------------------------------------------------------------------------

DECODERS = [CoordinatorInstance, Authorization, TreasurerRun, Participant, TokenAccount, Mint]
GOLDEN = [INSTANCE_BYTES, AUTH_BYTES, RUN_BYTES, PARTICIPANT_BYTES, TOKEN_BYTES, MINT_BYTES]


def _decode_or_decode_error(cls: type, data: bytes) -> None:
    # Anything else (IndexError, struct.error, ValueError from an enum...) fails the test.
    try:
        value = cls.decode(data)  # type: ignore[attr-defined]
    except AccountDecodeError:
        return
    assert isinstance(value, cls)


@given(st.sampled_from(DECODERS), st.binary(max_size=300))
def test_random_bytes_only_raise_account_decode_error(cls: type, data: bytes) -> None:
    _decode_or_decode_error(cls, data)


@given(st.sampled_from(DECODERS), st.binary(max_size=300))
def test_random_bodies_behind_a_valid_discriminator_only_raise_account_decode_error(
    cls: type, tail: bytes
) -> None:
    _decode_or_decode_error(cls, getattr(cls, "DISCRIMINATOR", b"") + tail)


@given(st.data())
def test_mutated_golden_bytes_only_raise_account_decode_error(data: st.DataObject) -> None:
    index = data.draw(st.integers(0, len(DECODERS) - 1))
    cls, golden = DECODERS[index], bytearray(GOLDEN[index])
    for _ in range(data.draw(st.integers(1, 4))):
        golden[data.draw(st.integers(0, len(golden) - 1))] = data.draw(u8s)
    cut = data.draw(st.integers(0, len(golden)))
    _decode_or_decode_error(cls, bytes(golden[:cut]))


@given(pubkeys, pubkeys, pubkeys, u8s, st.text(max_size=16))
def test_instance_round_trips(a: Pubkey, b: Pubkey, c: Pubkey, bump: int, run_id: str) -> None:
    value = CoordinatorInstance(
        bump=bump, main_authority=a, join_authority=b, coordinator_account=c, run_id=run_id
    )
    assert len(value.encode()) == 173
    assert CoordinatorInstance.decode(value.encode()) == value


@given(u8s, pubkeys, pubkeys, st.binary(max_size=40), st.booleans(), st.lists(pubkeys, max_size=5), i64s)
def test_authorization_round_trips(
    bump: int, grantor: Pubkey, grantee: Pubkey, scope: bytes, active: bool, delegates: list[Pubkey], ts: int
) -> None:
    value = Authorization(
        bump=bump,
        grantor=grantor,
        grantee=grantee,
        scope=scope,
        active=active,
        delegates=tuple(delegates),
        grantor_update_unix_timestamp=ts,
    )
    data = value.encode()
    assert len(data) == 90 + len(scope) + 32 * len(delegates)
    assert Authorization.decode(data) == value


@given(u8s, u64s, pubkeys, pubkeys, pubkeys, pubkeys, pubkeys, u64s, u64s)
def test_treasurer_run_round_trips(
    bump: int, index: int, a: Pubkey, b: Pubkey, c: Pubkey, d: Pubkey, e: Pubkey, x: int, y: int
) -> None:
    value = TreasurerRun(bump, index, a, b, c, d, e, x, y)
    assert TreasurerRun.decode(value.encode()) == value


@given(u8s, u64s, u64s)
def test_participant_round_trips(bump: int, x: int, y: int) -> None:
    value = Participant(bump, x, y)
    assert Participant.decode(value.encode()) == value


@given(
    pubkeys,
    pubkeys,
    u64s,
    st.none() | pubkeys,
    st.sampled_from(list(AccountState)),
    st.none() | u64s,
    u64s,
    st.none() | pubkeys,
)
def test_token_account_round_trips(
    mint: Pubkey,
    owner: Pubkey,
    amount: int,
    delegate: Pubkey | None,
    state: AccountState,
    is_native: int | None,
    delegated: int,
    close: Pubkey | None,
) -> None:
    value = TokenAccount(mint, owner, amount, delegate, state, is_native, delegated, close)
    assert len(value.encode()) == 165
    assert TokenAccount.decode(value.encode()) == value


@given(st.none() | pubkeys, u64s, u8s, st.booleans(), st.none() | pubkeys)
def test_mint_round_trips(
    authority: Pubkey | None, supply: int, decimals: int, initialized: bool, freeze: Pubkey | None
) -> None:
    value = Mint(authority, supply, decimals, initialized, freeze)
    assert len(value.encode()) == 82
    assert Mint.decode(value.encode()) == value
