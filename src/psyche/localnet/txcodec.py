"""Wire-transaction decoding and the JSON/text forms of TransactionError, as Solana's RPC prints them."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from solders.message import MessageV0
from solders.transaction import VersionedTransaction

from psyche.base58 import b58encode
from psyche.chain.transactions import PACKET_DATA_SIZE
from psyche.localnet.budget import MAX_BASE58_SIZE, MAX_BASE64_SIZE
from psyche.localnet.encoding import EncodingError, b58decode
from psyche.localnet.programs.base import InstructionError

_TX_MESSAGES = {
    "BlockhashNotFound": "Blockhash not found",
    "AlreadyProcessed": "This transaction has already been processed",
    "AccountNotFound": "Attempt to debit an account but found no record of a prior credit.",
    "InsufficientFundsForFee": "Insufficient funds for fee",
    "InvalidAccountForFee": "This account may not be used to pay transaction fees",
    "ProgramAccountNotFound": "Attempt to load a program that does not exist",
    "InvalidProgramForExecution": "Attempt to load a program that does not exist",
    "SignatureFailure": "Transaction did not pass signature verification",
    "AddressLookupTableNotFound": "Transaction loads an address table account that doesn't exist",
    "AccountLoadedTwice": "Account loaded twice",
}
_TX_TYPE = "solana_sdk::transaction::versioned::VersionedTransaction"


def describe_tx_error(err: Any) -> str:
    """TransactionError's Display text, e.g. ``Error processing Instruction 0: custom program error: 0x1``."""
    if isinstance(err, str):
        return _TX_MESSAGES.get(err, err)
    if isinstance(err, dict) and "InstructionError" in err:
        index, inner = err["InstructionError"]
        ie = (
            InstructionError.custom_code(inner["Custom"])
            if isinstance(inner, dict)
            else InstructionError(inner)
        )
        return f"Error processing Instruction {index}: {ie.describe()}"
    if isinstance(err, dict) and "DuplicateInstruction" in err:
        index = err["DuplicateInstruction"]
        return f"Transaction contains a duplicate instruction ({index}) that is not allowed"
    if isinstance(err, dict) and "InsufficientFundsForRent" in err:
        index = err["InsufficientFundsForRent"]["account_index"]
        return f"Transaction results in an account ({index}) with insufficient funds for rent"
    return str(err)


def decode_wire(text: str, encoding: str) -> bytes:
    """The raw bytes of an encoded transaction (``EncodingError`` for bad or too long text).

    Solana's packet limit, checked as agave's ``decode_and_deserialize`` does: first the encoded length, then
    the decoded one.
    """
    if encoding not in ("base64", "base58"):
        raise EncodingError(f"unsupported encoding: {encoding}. Supported encodings: base58, base64")
    longest = MAX_BASE64_SIZE if encoding == "base64" else MAX_BASE58_SIZE
    if len(text) > longest:
        raise EncodingError(
            f"{encoding} encoded {_TX_TYPE} too large: {len(text)} bytes "
            f"(max: encoded/raw {longest}/{PACKET_DATA_SIZE})"
        )
    if encoding == "base64":
        try:
            raw = base64.b64decode(text, validate=True)
        except binascii.Error as exc:
            raise EncodingError(f"invalid base64 encoding: {exc}") from exc
    else:
        raw = b58decode(text)
    if len(raw) > PACKET_DATA_SIZE:
        raise EncodingError(f"decoded {_TX_TYPE} too large: {len(raw)} bytes (max: {PACKET_DATA_SIZE} bytes)")
    return raw


def parse_transaction(raw: bytes) -> VersionedTransaction:
    """Deserialize and sanitize (``EncodingError`` with Solana's message otherwise)."""
    try:
        tx = VersionedTransaction.from_bytes(raw)
    except Exception as exc:  # solders raises a generic error type for bincode failures
        raise EncodingError(f"failed to deserialize {_TX_TYPE}: {exc}") from exc
    try:
        tx.sanitize()
    except Exception as exc:
        raise EncodingError(
            "invalid transaction: Transaction failed to sanitize accounts offsets correctly"
        ) from exc
    if len(tx.signatures) != tx.message.header.num_required_signatures:
        raise EncodingError("invalid transaction: Transaction failed to sanitize accounts offsets correctly")
    return tx


def transaction_json(tx: VersionedTransaction) -> dict[str, Any]:
    """The ``json`` encoding of a transaction in getTransaction."""
    message = tx.message
    h = message.header
    body: dict[str, Any] = {
        "accountKeys": [str(k) for k in message.account_keys],
        "header": {
            "numRequiredSignatures": h.num_required_signatures,
            "numReadonlySignedAccounts": h.num_readonly_signed_accounts,
            "numReadonlyUnsignedAccounts": h.num_readonly_unsigned_accounts,
        },
        "recentBlockhash": str(message.recent_blockhash),
        "instructions": [
            {
                "programIdIndex": ix.program_id_index,
                "accounts": list(ix.accounts),
                "data": b58encode(bytes(ix.data)),
                "stackHeight": None,
            }
            for ix in message.instructions
        ],
    }
    if isinstance(message, MessageV0):
        body["addressTableLookups"] = []
    return {"signatures": [str(s) for s in tx.signatures], "message": body}
