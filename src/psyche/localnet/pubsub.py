"""Solana pubsub subscriptions (account, program, signature, slot) fed by commits and the slot timer."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from solders.pubkey import Pubkey

from psyche.localnet.encoding import EncodingError, account_json, matches_filters
from psyche.localnet.ledger import Ledger, SlotInfo
from psyche.localnet.records import Account, TxRecord
from psyche.localnet.rpc import (
    INVALID_PARAMS,
    METHOD_NOT_FOUND,
    RpcError,
    _config,
    _param,
    _pubkey,
    _signature,
)

Send = Callable[[str], None]


@dataclass(slots=True)
class Subscription:
    """One websocket subscription: what it watches (``kind`` and ``key``) and where to send notifications."""

    id: int
    kind: str  # "account" | "program" | "signature" | "slot"
    send: Send
    key: Any = None
    config: dict[str, Any] = field(default_factory=dict)


_UNSUBSCRIBE = {
    "accountUnsubscribe": "account",
    "programUnsubscribe": "program",
    "signatureUnsubscribe": "signature",
    "slotUnsubscribe": "slot",
}


class PubSub:
    """All live subscriptions of all WebSocket connections; ``send`` callbacks must not block."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self._ids = itertools.count(1)
        self._subs: dict[int, Subscription] = {}
        self._deferred: list[tuple[Subscription, TxRecord]] = []
        ledger.listeners.append(self._on_commit)

    def handle(self, method: str, params: Any, send: Send) -> Any:
        """Answer one subscribe/unsubscribe request (the result), or raise :class:`RpcError`."""
        params = params if isinstance(params, list) else []
        if method in _UNSUBSCRIBE:
            sub_id = _param(params, 0, "subscription id")
            sub = self._subs.get(sub_id) if isinstance(sub_id, int) else None
            if sub is None or sub.kind != _UNSUBSCRIBE[method] or sub.send is not send:
                raise RpcError(INVALID_PARAMS, "Invalid subscription id.")
            del self._subs[sub_id]
            return True
        if method == "accountSubscribe":
            key: Any = _pubkey(_param(params, 0, "pubkey"))
            kind = "account"
        elif method == "programSubscribe":
            key = _pubkey(_param(params, 0, "program id"))
            kind = "program"
        elif method == "signatureSubscribe":
            key = _signature(_param(params, 0, "signature"))
            kind = "signature"
        elif method == "slotSubscribe":
            key, kind = None, "slot"
        else:
            raise RpcError(METHOD_NOT_FOUND, "Method not found")
        config = _config(params, 1)
        encoding = config.get("encoding") or "binary"
        if encoding not in ("binary", "base58", "base64", "base64+zstd", "jsonParsed"):
            raise RpcError(INVALID_PARAMS, f"Invalid params: unsupported encoding {encoding}")
        sub = Subscription(next(self._ids), kind, send, key, config)
        self._subs[sub.id] = sub
        if kind == "signature":
            record = self.ledger.transactions.get(key)
            if record is not None:
                # Already landed: notify right after the answer, like a node finding it in its status cache.
                self._deferred.append((sub, record))
        return sub.id

    def flush(self) -> None:
        """Send notifications that had to wait for their subscription's answer to go out first."""
        deferred, self._deferred = self._deferred, []
        for sub, record in deferred:
            if sub.id in self._subs:
                self._notify_signature(sub, record)

    def drop(self, send: Send) -> None:
        """Forget every subscription of a closed connection."""
        for sub_id in [i for i, s in self._subs.items() if s.send is send]:
            del self._subs[sub_id]

    def count(self) -> int:
        """How many subscriptions are open."""
        return len(self._subs)

    def _emit(self, sub: Subscription, method: str, value: Any, *, with_context: bool = True) -> None:
        result = {"context": {"slot": self.ledger.slot}, "value": value} if with_context else value
        message = {"jsonrpc": "2.0", "method": method, "params": {"result": result, "subscription": sub.id}}
        sub.send(json.dumps(message))

    def _encode(self, sub: Subscription, account: Account) -> dict[str, Any] | None:
        try:
            return account_json(account, sub.config.get("encoding") or "binary", sub.config.get("dataSlice"))
        except EncodingError:
            return None

    def _notify_signature(self, sub: Subscription, record: TxRecord) -> None:
        self._emit(sub, "signatureNotification", {"err": record.err})
        self._subs.pop(sub.id, None)

    def _on_commit(self, changed: list[Pubkey], record: TxRecord | None) -> None:
        if not self._subs:
            return
        changed_set = set(changed)
        for sub in list(self._subs.values()):
            if sub.kind == "account" and sub.key in changed_set:
                account = self.ledger.get(sub.key) or Account()
                encoded = self._encode(sub, account)
                if encoded is not None:
                    self._emit(sub, "accountNotification", encoded)
            elif sub.kind == "program":
                for key in changed:
                    current = self.ledger.get(key)
                    if current is None or current.owner != sub.key:
                        continue
                    if not matches_filters(current, sub.config.get("filters") or []):
                        continue
                    encoded = self._encode(sub, current)
                    if encoded is not None:
                        self._emit(sub, "programNotification", {"pubkey": str(key), "account": encoded})
            elif sub.kind == "signature" and record is not None and record.signature == sub.key:
                self._notify_signature(sub, record)

    def on_slot(self, info: SlotInfo) -> None:
        """Send a slotNotification to every slot subscription."""
        for sub in list(self._subs.values()):
            if sub.kind == "slot":
                value = {"parent": info.parent, "root": info.parent, "slot": info.slot}
                self._emit(sub, "slotNotification", value, with_context=False)
