"""JSON-RPC over HTTP to an ordered endpoint pool with fallback and stickiness; typed Solana helpers."""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, NamedTuple, Protocol, TypeVar

import httpx
from solders.account_decoder import UiAccountEncoding
from solders.commitment_config import CommitmentLevel
from solders.errors import SerdeJSONError
from solders.hash import Hash
from solders.pubkey import Pubkey
from solders.rpc.config import (
    RpcAccountInfoConfig,
    RpcContextConfig,
    RpcProgramAccountsConfig,
    RpcRequestAirdropConfig,
    RpcSendTransactionConfig,
    RpcSignatureStatusConfig,
    RpcTransactionConfig,
)
from solders.rpc.filter import Memcmp
from solders.rpc.requests import (
    GetAccountInfo,
    GetBalance,
    GetLatestBlockhash,
    GetMinimumBalanceForRentExemption,
    GetMultipleAccounts,
    GetProgramAccounts,
    GetSignatureStatuses,
    GetSlot,
    GetTransaction,
    RequestAirdrop,
    SendLegacyTransaction,
    SendVersionedTransaction,
)
from solders.rpc.responses import (
    GetAccountInfoResp,
    GetBalanceResp,
    GetLatestBlockhashResp,
    GetMinimumBalanceForRentExemptionResp,
    GetMultipleAccountsResp,
    GetProgramAccountsResp,
    GetSignatureStatusesResp,
    GetSlotResp,
    RequestAirdropResp,
    SendTransactionResp,
)
from solders.signature import Signature
from solders.transaction import Transaction, VersionedTransaction
from solders.transaction_status import TransactionConfirmationStatus, TransactionStatus, UiTransactionEncoding

from psyche.backoff import Backoff
from psyche.base58 import b58encode
from psyche.chain.endpoints import redacted_labels, scrub
from psyche.chain.program_errors import describe_tx_error, parse_transaction_error, program_error_of
from psyche.errors import ConfigError, RpcError, RpcResponseError, RpcUnavailable, TransactionFailed

__all__ = ["AccountInfo", "RpcClient", "TransactionRecord", "parse_transaction_error"]

MULTIPLE_ACCOUNTS_CHUNK = 100
_CONFIRMED = CommitmentLevel.Confirmed
_ACCOUNT_CONFIG = RpcAccountInfoConfig(encoding=UiAccountEncoding.Base64, commitment=_CONFIRMED)
_CONTEXT_CONFIG = RpcContextConfig(commitment=_CONFIRMED)
# JSON-RPC errors that describe the node's state, not the request: another endpoint (or this one, later)
# may answer. -32005 node unhealthy ("Node is behind by N slots"), -32016 minimum context slot not reached,
# -32429 rate limited (providers' JSON-RPC form of HTTP 429).
TRANSIENT_RPC_ERRORS = frozenset({-32005, -32016, -32429})


class AccountInfo(NamedTuple):
    """An account as read at ``confirmed``: raw data bytes, owner program, balance."""

    data: bytes
    owner: Pubkey
    lamports: int


class TransactionRecord(NamedTuple):
    """A landed transaction: its slot, program logs, and the raw JSON error (None when it succeeded)."""

    slot: int
    logs: list[str]
    err: Any


class _Request(Protocol):
    def to_json(self) -> str: ...


class _Response(Protocol):
    @staticmethod
    def from_json(raw: str) -> Any: ...


_Resp = TypeVar("_Resp", bound=_Response)


@dataclass(frozen=True, slots=True)
class _Failure:
    reason: str
    retry_later: bool  # False: this endpoint will not answer this request differently on a later pass


def _is_rpc_message(item: object) -> bool:
    return isinstance(item, dict) and ("result" in item or "error" in item)


def _is_rpc_body(parsed: object) -> bool:
    if isinstance(parsed, list):
        return bool(parsed) and all(_is_rpc_message(item) for item in parsed)
    return _is_rpc_message(parsed)


def _transient_error(parsed: Any) -> str | None:
    """The first error in a JSON-RPC body whose code is in TRANSIENT_RPC_ERRORS, as text; None if none."""
    for message in parsed if isinstance(parsed, list) else [parsed]:
        error = message.get("error") if isinstance(message, dict) else None
        if isinstance(error, dict) and error.get("code") in TRANSIENT_RPC_ERRORS:
            return f"RPC error {error['code']}: {error.get('message', '')}"
    return None


def _result_of(message: Any) -> Any:
    """The ``result`` of one JSON-RPC response object, or its error object raised as RpcResponseError."""
    error = message.get("error")
    if error is None:
        return message.get("result")
    if not isinstance(error, dict):
        raise RpcResponseError(-32603, f"malformed error object: {error!r}")
    code = error.get("code")
    raise RpcResponseError(
        code if isinstance(code, int) else -32603, str(error.get("message", "")), error.get("data")
    )


class RpcClient:
    """Synchronous JSON-RPC client over an ordered pool of endpoints, sticky to the last one that answered.

    Per request: the sticky endpoint first, then the others in configured order. Transport failures,
    timeouts, non-JSON bodies, HTTP 429 and 5xx, and the JSON-RPC errors that describe the node's state
    (TRANSIENT_RPC_ERRORS: node behind, rate limited) move on and are retried on the next pass
    (``max_rounds`` passes, exponential backoff between passes). Other HTTP statuses (401, 403, 404 ...)
    move on but the endpoint is not retried within the request. Any other JSON-RPC error object is an
    answer: raised as RpcResponseError at once. When nothing answers: RpcUnavailable with every (redacted)
    endpoint and its last error, ``transient`` when a later try may succeed. See docs/rpc.md. One client
    may be shared between threads (httpx.Client is thread-safe).
    """

    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        max_rounds: int = 2,
        backoff_base: float = 0.1,
        backoff_cap: float = 2.0,
        on_fallback: Callable[[str, str, str], None] | None = None,
    ) -> None:
        if not endpoints:
            raise ConfigError("no RPC endpoint configured", hint="set RPC in your .env")
        if max_rounds < 1:
            raise ConfigError(f"max_rounds must be at least 1, got {max_rounds}")
        self._urls = list(endpoints)
        self._labels = redacted_labels(self._urls)
        self._timeout = timeout
        self._sleep = sleep
        self._monotonic = monotonic
        self._max_rounds = max_rounds
        self._backoff = Backoff(backoff_base, backoff_cap, attempts=max_rounds)
        self._on_fallback = on_fallback
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._current = 0
        self.round_trips = 0
        self._http = httpx.Client(
            transport=transport,
            timeout=httpx.Timeout(timeout),
            headers={"content-type": "application/json", "accept": "application/json"},
        )

    # -- plumbing ---------------------------------------------------------------------------------------

    @property
    def endpoints(self) -> list[str]:
        """The configured endpoints, redacted, in order."""
        return list(self._labels)

    @property
    def current_endpoint(self) -> str:
        """The (redacted) endpoint tried first by the next request: the last one that answered."""
        return self._labels[self._current]

    def close(self) -> None:
        """Close the pooled HTTP connections."""
        self._http.close()

    def __enter__(self) -> RpcClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _attempt(self, index: int, payload: bytes) -> tuple[str, Any] | _Failure:
        url = self._urls[index]
        with self._lock:
            self.round_trips += 1
        try:
            response = self._http.post(url, content=payload)
        except httpx.TimeoutException as exc:
            return _Failure(f"timed out after {self._timeout:g}s ({type(exc).__name__})", True)
        except httpx.TransportError as exc:
            # Error texts may quote the URL; keep API keys out of them.
            detail = scrub(str(exc) or type(exc).__name__, [url])
            return _Failure(f"{type(exc).__name__}: {detail}", True)
        except httpx.InvalidURL as exc:
            return _Failure(f"invalid URL: {type(exc).__name__}", False)
        status = response.status_code
        phrase = f"HTTP {status} {response.reason_phrase}".rstrip()
        if status == 429 or status >= 500:
            return _Failure(phrase, True)
        try:
            parsed = json.loads(response.content)
        except ValueError:
            parsed = None
        if 200 <= status < 300:
            if not _is_rpc_body(parsed):
                return _Failure(f"{phrase} but the body is not a JSON-RPC response", True)
            busy = _transient_error(parsed)
            return (response.text, parsed) if busy is None else _Failure(busy, True)
        # Some providers send -32602 and friends with a 400: a JSON-RPC error body is still the node's answer.
        answered = isinstance(parsed, dict) and isinstance(parsed.get("error"), dict)
        if 400 <= status < 500 and status not in (401, 403) and answered:
            busy = _transient_error(parsed)
            return (response.text, parsed) if busy is None else _Failure(busy, True)
        # 401/403 (key, plan), 404 (path), 3xx: specific to this provider, so the next one may serve us;
        # asking this one again in the same request would get the same answer.
        return _Failure(phrase, False)

    def _exchange(self, payload: bytes) -> tuple[str, Any]:
        """POST ``payload`` following the fallback policy; return the body text and its parsed JSON."""
        count = len(self._urls)
        start = self._current
        order = [start, *(i for i in range(count) if i != start)]
        failures: dict[int, str] = {}
        given_up: set[int] = set()
        last_failed: tuple[int, str] | None = None
        for round_no in range(self._max_rounds):
            candidates = [i for i in order if i not in given_up]
            if not candidates:
                break
            if round_no:
                self._sleep(self._backoff.delay(round_no))
            for index in candidates:
                if last_failed is not None and last_failed[0] != index and self._on_fallback is not None:
                    self._on_fallback(self._labels[last_failed[0]], self._labels[index], last_failed[1])
                outcome = self._attempt(index, payload)
                if not isinstance(outcome, _Failure):
                    self._current = index
                    return outcome
                failures[index] = outcome.reason
                last_failed = (index, outcome.reason)
                if not outcome.retry_later:
                    given_up.add(index)
        raise RpcUnavailable(
            {self._labels[i]: failures[i] for i in range(count) if i in failures},
            transient=any(i not in given_up for i in failures),
        )

    def _envelope(self, method: str, params: Any) -> dict[str, Any]:
        body: dict[str, Any] = {"jsonrpc": "2.0", "id": next(self._ids), "method": method}
        if params is not None:
            body["params"] = params
        return body

    def _typed(self, request: _Request, cls: type[_Resp], method: str) -> _Resp:
        text, parsed = self._exchange(request.to_json().encode())
        if not isinstance(parsed, dict):
            raise RpcError(f"{method}: expected one JSON-RPC response object from {self.current_endpoint}")
        _result_of(parsed)
        try:
            resp = cls.from_json(text)
        except (SerdeJSONError, ValueError) as exc:
            raise RpcError(f"{method}: unexpected response from {self.current_endpoint}: {exc}") from exc
        if not isinstance(resp, cls):  # solders maps unexpected shapes to error objects instead of raising
            raise RpcError(f"{method}: unexpected response from {self.current_endpoint}: {resp}")
        return resp

    # -- raw JSON-RPC -----------------------------------------------------------------------------------

    def call(self, method: str, params: Any = None) -> Any:
        """Send one request and return its ``result``; RpcResponseError if the node answers an error."""
        _, parsed = self._exchange(json.dumps(self._envelope(method, params)).encode())
        if not isinstance(parsed, dict):
            raise RpcError(f"{method}: expected one JSON-RPC response object from {self.current_endpoint}")
        return _result_of(parsed)

    def batch(self, calls: Sequence[tuple[str, Any]]) -> list[Any]:
        """Send several requests in ONE POST (a JSON-RPC batch); return their results in request order.

        The first item answered with an error raises RpcResponseError (as does a batch the node rejects).
        """
        if not calls:
            return []
        bodies = [self._envelope(method, params) for method, params in calls]
        _, parsed = self._exchange(json.dumps(bodies).encode())
        if isinstance(parsed, dict):
            _result_of(parsed)  # the whole batch was refused with one error object
            raise RpcError(f"batch: expected a JSON array from {self.current_endpoint}")
        by_id = {item.get("id"): item for item in parsed}
        results = []
        for body in bodies:
            item = by_id.get(body["id"])
            if item is None:
                raise RpcError(f"batch: no answer for {body['method']} from {self.current_endpoint}")
            results.append(_result_of(item))
        return results

    # -- typed helpers (solders requests and responses) -------------------------------------------------

    def get_account_info(self, pubkey: Pubkey) -> AccountInfo | None:
        """The account at ``pubkey`` (base64, confirmed), or None if it does not exist."""
        resp = self._typed(GetAccountInfo(pubkey, _ACCOUNT_CONFIG), GetAccountInfoResp, "getAccountInfo")
        account = resp.value
        return None if account is None else AccountInfo(bytes(account.data), account.owner, account.lamports)

    def get_multiple_accounts(self, pubkeys: Sequence[Pubkey]) -> list[AccountInfo | None]:
        """Accounts for ``pubkeys`` in order (None where absent); one POST per 100 keys."""
        out: list[AccountInfo | None] = []
        for start in range(0, len(pubkeys), MULTIPLE_ACCOUNTS_CHUNK):
            chunk = list(pubkeys[start : start + MULTIPLE_ACCOUNTS_CHUNK])
            resp = self._typed(
                GetMultipleAccounts(chunk, _ACCOUNT_CONFIG),
                GetMultipleAccountsResp,
                "getMultipleAccounts",
            )
            out.extend(
                None if a is None else AccountInfo(bytes(a.data), a.owner, a.lamports) for a in resp.value
            )
        return out

    def get_program_accounts(
        self, program: Pubkey, filters: Sequence[int | tuple[int, bytes]] = ()
    ) -> list[tuple[Pubkey, bytes]]:
        """Accounts owned by ``program`` matching all filters: int = dataSize, (offset, bytes) = memcmp."""
        # memcmp bytes travel as base58, the one encoding every provider accepts.
        solders_filters: list[int | Memcmp] = [
            f if isinstance(f, int) else Memcmp(f[0], b58encode(f[1])) for f in filters
        ]
        config = RpcProgramAccountsConfig(_ACCOUNT_CONFIG, filters=solders_filters or None)
        resp = self._typed(GetProgramAccounts(program, config), GetProgramAccountsResp, "getProgramAccounts")
        return [(keyed.pubkey, bytes(keyed.account.data)) for keyed in resp.value]

    def get_balance(self, pubkey: Pubkey) -> int:
        """Lamports held by ``pubkey`` (0 for a missing account)."""
        return self._typed(GetBalance(pubkey, _CONTEXT_CONFIG), GetBalanceResp, "getBalance").value

    def get_latest_blockhash(self) -> tuple[Hash, int]:
        """The latest confirmed blockhash and the last block height at which it is valid."""
        resp = self._typed(GetLatestBlockhash(_CONTEXT_CONFIG), GetLatestBlockhashResp, "getLatestBlockhash")
        return resp.value.blockhash, resp.value.last_valid_block_height

    def get_minimum_balance_for_rent_exemption(self, size: int) -> int:
        """Lamports that make an account of ``size`` data bytes rent-exempt."""
        return self._typed(
            GetMinimumBalanceForRentExemption(size),
            GetMinimumBalanceForRentExemptionResp,
            "getMinimumBalanceForRentExemption",
        ).value

    def get_slot(self) -> int:
        """The current confirmed slot."""
        return self._typed(GetSlot(_CONTEXT_CONFIG), GetSlotResp, "getSlot").value

    def get_health(self) -> str:
        """``"ok"`` from a healthy node; an unhealthy one answers a JSON-RPC error (RpcResponseError)."""
        return str(self.call("getHealth"))

    def request_airdrop(self, pubkey: Pubkey, lamports: int) -> Signature:
        """Ask a test cluster for ``lamports``; returns the airdrop transaction signature."""
        request = RequestAirdrop(pubkey, lamports, RpcRequestAirdropConfig(commitment=_CONFIRMED))
        return self._typed(request, RequestAirdropResp, "requestAirdrop").value

    def send_transaction(
        self, tx: Transaction | VersionedTransaction, *, skip_preflight: bool = False
    ) -> Signature:
        """Submit a signed transaction (preflight at confirmed); TransactionFailed if the node rejects it."""
        config = RpcSendTransactionConfig(skip_preflight=skip_preflight, preflight_commitment=_CONFIRMED)
        request = (
            SendLegacyTransaction(tx, config)
            if isinstance(tx, Transaction)
            else SendVersionedTransaction(tx, config)
        )
        try:
            return self._typed(request, SendTransactionResp, "sendTransaction").value
        except RpcResponseError as exc:
            raise parse_transaction_error(exc, signature=str(tx.signatures[0])) from exc

    def get_signature_statuses(self, signatures: Sequence[Signature]) -> list[TransactionStatus | None]:
        """Status of each signature (None if unknown), searching history beyond the recent cache."""
        request = GetSignatureStatuses(
            list(signatures), RpcSignatureStatusConfig(search_transaction_history=True)
        )
        return list(self._typed(request, GetSignatureStatusesResp, "getSignatureStatuses").value)

    def confirm_transaction(
        self, signature: Signature, timeout: float = 30.0, *, poll_interval: float = 0.5
    ) -> int:
        """Wait until ``signature`` is confirmed; return its slot. TransactionFailed on failure or timeout."""
        deadline = self._monotonic() + timeout
        while True:
            status = self.get_signature_statuses([signature])[0]
            if status is not None and status.err is not None:
                err = json.loads(status.to_json()).get("err")
                record = self.get_transaction(signature)
                raise TransactionFailed(
                    f"transaction {signature} failed: {describe_tx_error(err)}",
                    signature=str(signature),
                    logs=record.logs if record else [],
                    program_error=program_error_of(err),
                )
            if status is not None and status.confirmation_status in (
                TransactionConfirmationStatus.Confirmed,
                TransactionConfirmationStatus.Finalized,
            ):
                return status.slot
            if self._monotonic() >= deadline:
                raise TransactionFailed(
                    f"transaction {signature} not confirmed within {timeout:g}s",
                    signature=str(signature),
                    hint="it may still land: look the signature up before sending it again",
                )
            self._sleep(poll_interval)

    def get_transaction(self, signature: Signature) -> TransactionRecord | None:
        """The confirmed transaction's slot, logs and error; None if the node does not know it (yet)."""
        config = RpcTransactionConfig(
            encoding=UiTransactionEncoding.Base64, commitment=_CONFIRMED, max_supported_transaction_version=0
        )
        # Only slot, logs and err are needed: read them from the JSON rather than fully parsing the
        # transaction meta, whose optional parts differ between node versions and the local chain.
        params = json.loads(GetTransaction(signature, config).to_json())["params"]
        result = self.call("getTransaction", params)
        if result is None:
            return None
        meta = result.get("meta") or {}
        logs = [line for line in meta.get("logMessages") or [] if isinstance(line, str)]
        return TransactionRecord(int(result.get("slot", 0)), logs, meta.get("err"))
