"""Solana JSON-RPC methods over the local ledger: parameters, result shapes and error codes (no I/O)."""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from typing import Any

from solders.hash import Hash
from solders.message import Message, from_bytes_versioned
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.system_program import TransferParams, transfer
from solders.transaction import Legacy, VersionedTransaction

from psyche.chain.accounts.token import Mint, TokenAccount
from psyche.chain.programs import TOKEN_PROGRAM_ID
from psyche.errors import AccountDecodeError
from psyche.localnet.encoding import EncodingError, account_json, matches_filters, token_amount
from psyche.localnet.executor import ExecutionResult, Executor, message_fee
from psyche.localnet.ledger import FAUCET, SLOTS_PER_EPOCH, Ledger, rent_exempt_minimum
from psyche.localnet.txcodec import decode_wire, describe_tx_error, parse_transaction, transaction_json

log = logging.getLogger(__name__)

SOLANA_CORE_VERSION = "2.1.4"
FEATURE_SET = 3_271_415_109

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
PREFLIGHT_FAILURE = -32002
SIGNATURE_VERIFICATION_FAILURE = -32003
UNSUPPORTED_TRANSACTION_VERSION = -32015


class RpcError(Exception):
    """A JSON-RPC error answer."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def to_json(self) -> dict[str, Any]:
        """The JSON-RPC ``error`` object."""
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            body["data"] = self.data
        return body


def _param(params: list[Any], index: int, what: str) -> Any:
    if len(params) <= index:
        raise RpcError(INVALID_PARAMS, f"`params` should have at least {index + 1} argument(s)")
    return params[index]


def _config(params: list[Any], index: int) -> dict[str, Any]:
    value = params[index] if len(params) > index else None
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise RpcError(INVALID_PARAMS, "Invalid params: invalid type: expected a config map")
    return value


def _pubkey(text: Any) -> Pubkey:
    try:
        return Pubkey.from_string(str(text))
    except Exception as exc:  # solders' parse error
        raise RpcError(INVALID_PARAMS, "Invalid param: Invalid") from exc


def _signature(text: Any) -> Signature:
    try:
        return Signature.from_string(str(text))
    except Exception as exc:  # solders' parse error
        raise RpcError(INVALID_PARAMS, "Invalid param: Invalid") from exc


class RpcMethods:
    """The method table; ``call`` returns a result or raises :class:`RpcError`."""

    def __init__(self, ledger: Ledger, executor: Executor, *, clock_control: bool = False) -> None:
        self.ledger = ledger
        self.executor = executor
        self.clock_control = clock_control
        self._methods: dict[str, Callable[[list[Any]], Any]] = {
            name[4:]: getattr(self, name) for name in dir(self) if name.startswith("rpc_")
        }

    def call(self, method: str, params: Any) -> Any:
        """Run JSON-RPC ``method`` with ``params`` (an array or null).

        Raises:
            RpcError: unknown method (``localnet_advanceClock`` too, unless clock control is on), params that
                are not an array, or the method's own error.
        """
        fn = self._methods.get(method) if isinstance(method, str) else None
        if method == "localnet_advanceClock" and not self.clock_control:
            fn = None
        if fn is None:
            raise RpcError(METHOD_NOT_FOUND, "Method not found")
        if params is None:
            params = []
        if not isinstance(params, list):
            raise RpcError(INVALID_PARAMS, "Invalid params: expected an array")
        try:
            return fn(params)
        except EncodingError as exc:
            raise RpcError(INVALID_PARAMS, str(exc)) from exc

    def _context(self) -> dict[str, Any]:
        return {"slot": self.ledger.slot, "apiVersion": SOLANA_CORE_VERSION}

    def _with_context(self, value: Any) -> dict[str, Any]:
        return {"context": self._context(), "value": value}

    def _mint_decimals(self) -> dict[bytes, int]:
        out = {}
        for key, account in self.ledger.program_accounts(TOKEN_PROGRAM_ID):
            if len(account.data) == Mint.SIZE:
                out[bytes(key)] = account.data[44]
        return out

    def _account(self, key: Pubkey, config: dict[str, Any]) -> dict[str, Any] | None:
        account = self.ledger.get(key)
        if account is None:
            return None
        encoding = config.get("encoding") or "binary"
        decimals = self._mint_decimals() if encoding == "jsonParsed" else None
        return account_json(account, encoding, config.get("dataSlice"), decimals)

    # -- cluster ------------------------------------------------------------------------------------------

    def rpc_getHealth(self, params: list[Any]) -> str:
        """Always "ok": the local chain has no peers to fall behind."""
        return "ok"

    def rpc_getVersion(self, params: list[Any]) -> dict[str, Any]:
        return {"solana-core": SOLANA_CORE_VERSION, "feature-set": FEATURE_SET}

    def rpc_getSlot(self, params: list[Any]) -> int:
        return self.ledger.slot

    def rpc_getBlockHeight(self, params: list[Any]) -> int:
        return self.ledger.block_height

    def rpc_getGenesisHash(self, params: list[Any]) -> str:
        """A fixed hash, the same for every local chain."""
        return str(Hash.hash(b"psyche-localnet"))

    def rpc_getEpochInfo(self, params: list[Any]) -> dict[str, Any]:
        slot = self.ledger.slot
        return {
            "absoluteSlot": slot,
            "blockHeight": self.ledger.block_height,
            "epoch": slot // SLOTS_PER_EPOCH,
            "slotIndex": slot % SLOTS_PER_EPOCH,
            "slotsInEpoch": SLOTS_PER_EPOCH,
            "transactionCount": self.ledger.transaction_count,
        }

    def rpc_getLatestBlockhash(self, params: list[Any]) -> dict[str, Any]:
        value = {
            "blockhash": str(self.ledger.latest_blockhash),
            "lastValidBlockHeight": self.ledger.last_valid_block_height,
        }
        return self._with_context(value)

    def rpc_isBlockhashValid(self, params: list[Any]) -> dict[str, Any]:
        try:
            blockhash = Hash.from_string(str(_param(params, 0, "blockhash")))
        except ValueError as exc:
            raise RpcError(INVALID_PARAMS, "Invalid param: Invalid") from exc
        return self._with_context(self.ledger.is_blockhash_valid(blockhash))

    def rpc_getMinimumBalanceForRentExemption(self, params: list[Any]) -> int:
        size = _param(params, 0, "data length")
        if not isinstance(size, int) or size < 0:
            raise RpcError(INVALID_PARAMS, "Invalid params: invalid type: expected usize")
        return rent_exempt_minimum(size)

    def rpc_getFeeForMessage(self, params: list[Any]) -> dict[str, Any]:
        try:
            message = from_bytes_versioned(base64.b64decode(str(_param(params, 0, "message"))))
        except Exception as exc:  # bad base64 or bincode
            raise RpcError(INVALID_PARAMS, f"invalid message: {exc}") from exc
        valid = self.ledger.is_blockhash_valid(message.recent_blockhash)
        return self._with_context(message_fee(message) if valid else None)

    def rpc_getRecentPrioritizationFees(self, params: list[Any]) -> list[Any]:
        """Always empty: the local chain charges no priority fees."""
        return []

    # -- accounts -----------------------------------------------------------------------------------------

    def rpc_getAccountInfo(self, params: list[Any]) -> dict[str, Any]:
        key = _pubkey(_param(params, 0, "pubkey"))
        return self._with_context(self._account(key, _config(params, 1)))

    def rpc_getMultipleAccounts(self, params: list[Any]) -> dict[str, Any]:
        keys = _param(params, 0, "pubkeys")
        if not isinstance(keys, list) or len(keys) > 100:
            raise RpcError(INVALID_PARAMS, "Too many inputs provided; max 100")
        config = _config(params, 1)
        return self._with_context([self._account(_pubkey(k), config) for k in keys])

    def rpc_getBalance(self, params: list[Any]) -> dict[str, Any]:
        account = self.ledger.get(_pubkey(_param(params, 0, "pubkey")))
        return self._with_context(account.lamports if account else 0)

    def rpc_getProgramAccounts(self, params: list[Any]) -> Any:
        program = _pubkey(_param(params, 0, "program id"))
        config = _config(params, 1)
        filters = config.get("filters") or []
        encoding = config.get("encoding") or "binary"
        decimals = self._mint_decimals() if encoding == "jsonParsed" else None
        out = [
            {
                "pubkey": str(key),
                "account": account_json(account, encoding, config.get("dataSlice"), decimals),
            }
            for key, account in self.ledger.program_accounts(program)
            if matches_filters(account, filters)
        ]
        return self._with_context(out) if config.get("withContext") else out

    def rpc_getTokenAccountBalance(self, params: list[Any]) -> dict[str, Any]:
        account = self.ledger.get(_pubkey(_param(params, 0, "pubkey")))
        if account is None or account.owner != TOKEN_PROGRAM_ID or len(account.data) != TokenAccount.SIZE:
            raise RpcError(INVALID_PARAMS, "Invalid param: not a Token account")
        try:
            token = TokenAccount.decode(bytes(account.data))
        except AccountDecodeError as exc:
            raise RpcError(INVALID_PARAMS, "Invalid param: not a Token account") from exc
        mint = self.ledger.get(token.mint)
        if mint is None or len(mint.data) != Mint.SIZE:
            raise RpcError(INVALID_PARAMS, "Invalid param: mint could not be unpacked")
        return self._with_context(token_amount(token, mint.data[44]))

    # -- transactions -------------------------------------------------------------------------------------

    def _decode(self, params: list[Any]) -> tuple[bytes, VersionedTransaction, dict[str, Any]]:
        config = _config(params, 1)
        text = _param(params, 0, "transaction")
        if not isinstance(text, str):
            raise RpcError(INVALID_PARAMS, "Invalid params: expected an encoded transaction string")
        raw = decode_wire(text, config.get("encoding") or "base58")
        return raw, parse_transaction(raw), config

    @staticmethod
    def _simulation_value(result: ExecutionResult, accounts: Any = None) -> dict[str, Any]:
        return {
            "err": result.err,
            "logs": result.logs,
            "accounts": accounts,
            "unitsConsumed": result.units,
            "returnData": None,
            "innerInstructions": None,
        }

    def rpc_sendTransaction(self, params: list[Any]) -> str:
        """Verify the signatures, run a preflight (unless ``skipPreflight``), then execute and commit; a
        failed preflight is error -32002 with the simulation in ``data``."""
        raw, tx, config = self._decode(params)
        if not all(tx.verify_with_results()):
            raise RpcError(SIGNATURE_VERIFICATION_FAILURE, "Transaction signature verification failure")
        if not config.get("skipPreflight"):
            preflight = self.executor.execute(tx, raw, commit=False)
            if preflight.err is not None:
                raise RpcError(
                    PREFLIGHT_FAILURE,
                    f"Transaction simulation failed: {describe_tx_error(preflight.err)}",
                    self._simulation_value(preflight),
                )
        self.executor.execute(tx, raw, commit=True)
        return str(tx.signatures[0])

    def rpc_simulateTransaction(self, params: list[Any]) -> dict[str, Any]:
        """Execute without committing; supports ``sigVerify``, ``replaceRecentBlockhash`` and ``accounts``."""
        raw, tx, config = self._decode(params)
        sig_verify = bool(config.get("sigVerify"))
        replace = bool(config.get("replaceRecentBlockhash"))
        if sig_verify and replace:
            raise RpcError(INVALID_PARAMS, "sigVerify may not be used with replaceRecentBlockhash")
        result = self.executor.execute(
            tx, raw, commit=False, sig_verify=sig_verify, check_blockhash=not replace
        )
        accounts = None
        wanted = config.get("accounts")
        if isinstance(wanted, dict):
            encoding = wanted.get("encoding") or "base64"
            accounts = []
            for text in wanted.get("addresses", []):
                key = _pubkey(text)
                account = result.accounts.get(key) or self.ledger.get(key)
                accounts.append(account_json(account, encoding) if account and account.lamports else None)
        value = self._simulation_value(result, accounts)
        if replace:
            value["replacementBlockhash"] = {
                "blockhash": str(self.ledger.latest_blockhash),
                "lastValidBlockHeight": self.ledger.last_valid_block_height,
            }
        return self._with_context(value)

    def rpc_requestAirdrop(self, params: list[Any]) -> str:
        """A transfer from the fixed, public FAUCET key, committed at once."""
        to = _pubkey(_param(params, 0, "pubkey"))
        lamports = _param(params, 1, "lamports")
        if not isinstance(lamports, int) or lamports <= 0:
            raise RpcError(INVALID_PARAMS, "Invalid params: lamports must be a positive integer")
        ix = transfer(TransferParams(from_pubkey=FAUCET.pubkey(), to_pubkey=to, lamports=lamports))
        message = Message.new_with_blockhash([ix], FAUCET.pubkey(), self.ledger.latest_blockhash)
        tx = VersionedTransaction(message, [FAUCET])
        result = self.executor.execute(tx, bytes(tx), commit=True)
        if result.err is not None:
            raise RpcError(INTERNAL_ERROR, f"airdrop failed: {describe_tx_error(result.err)}")
        return str(tx.signatures[0])

    def rpc_getSignatureStatuses(self, params: list[Any]) -> dict[str, Any]:
        """Every landed transaction reports ``finalized``: the local chain has one node and no forks."""
        sigs = _param(params, 0, "signatures")
        if not isinstance(sigs, list) or len(sigs) > 256:
            raise RpcError(INVALID_PARAMS, "Too many inputs provided; max 256")
        out: list[Any] = []
        for text in sigs:
            record = self.ledger.transactions.get(_signature(text))
            if record is None:
                out.append(None)
                continue
            out.append(
                {
                    "slot": record.slot,
                    "confirmations": None,
                    "err": record.err,
                    "status": {"Ok": None} if record.err is None else {"Err": record.err},
                    "confirmationStatus": "finalized",
                }
            )
        return self._with_context(out)

    def rpc_getTransaction(self, params: list[Any]) -> dict[str, Any] | None:
        record = self.ledger.transactions.get(_signature(_param(params, 0, "signature")))
        config = _config(params, 1)
        if record is None:
            return None
        tx = VersionedTransaction.from_bytes(record.raw)
        legacy = tx.version() == Legacy.Legacy
        max_version = config.get("maxSupportedTransactionVersion")
        if not legacy and max_version is None:
            raise RpcError(
                UNSUPPORTED_TRANSACTION_VERSION,
                "Transaction version (0) is not supported by the requesting client. "
                "Please try the request again "
                'with the following configuration parameter: "maxSupportedTransactionVersion": 0',
            )
        encoding = config.get("encoding") or "json"
        if encoding in ("json", "jsonParsed"):
            body: Any = transaction_json(tx)
        elif encoding == "base64":
            body = [base64.b64encode(record.raw).decode(), "base64"]
        else:
            raise RpcError(INVALID_PARAMS, f"unsupported encoding: {encoding}")
        meta = {
            "err": record.err,
            "status": {"Ok": None} if record.err is None else {"Err": record.err},
            "fee": record.fee,
            "preBalances": record.pre_balances,
            "postBalances": record.post_balances,
            "innerInstructions": [],
            "logMessages": record.logs,
            "preTokenBalances": [],
            "postTokenBalances": [],
            "rewards": [],
            "loadedAddresses": {"writable": [], "readonly": []},
            "computeUnitsConsumed": record.units,
        }
        out = {"slot": record.slot, "blockTime": record.block_time, "transaction": body, "meta": meta}
        if max_version is not None:
            out["version"] = "legacy" if legacy else 0
        return out

    # -- test-only ----------------------------------------------------------------------------------------

    def rpc_localnet_advanceClock(self, params: list[Any]) -> dict[str, Any]:
        """Not a Solana method: move the chain clock forward by ``seconds`` (only with clock control on,
        for tests)."""
        seconds = _param(params, 0, "seconds")
        if not isinstance(seconds, int) or seconds < 0:
            raise RpcError(INVALID_PARAMS, "Invalid params: seconds must be a non-negative integer")
        return {"unixTimestamp": self.ledger.advance_clock(seconds), "slot": self.ledger.slot}
