"""The bad-input corpus for the local chain's server (tests/unit/test_bad_input.py holds the rest).

Each row is a request body sent over a real loopback connection to the real server, and the JSON-RPC
error code Solana answers it with. Every row also asserts: the same connection still answers the next
request (not dropped), and the server logged no traceback.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import httpx
import pytest
from websockets.asyncio.client import connect

from tests.support.localnet import localnet, run

DEEP = b"[" * 100_000 + b"]" * 100_000


@dataclass(frozen=True)
class Row:
    id: str
    body: bytes
    code: int  # the JSON-RPC error code of the answer


ROWS = [
    Row("array nested 100000 deep", DEEP, -32700),
    Row(
        "params nested 100000 deep",
        b'{"jsonrpc":"2.0","id":1,"method":"getSlot","params":' + DEEP + b"}",
        -32700,
    ),
    Row("object nested 100000 deep", b'{"a":' * 100_000 + b"1" + b"}" * 100_000, -32700),
    Row("not UTF-8", b'{"jsonrpc":"2.0","id":1,"method":"getSlot\xff"}', -32700),
    Row("cut short", b'{"jsonrpc":"2.0","id":1,', -32700),
    Row("empty batch", b"[]", -32600),
]
GET_SLOT = {"jsonrpc": "2.0", "id": 7, "method": "getSlot"}


def test_http_bad_bodies_get_their_error_and_keep_the_connection(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        async with localnet() as srv, httpx.AsyncClient() as http:
            for row in ROWS:
                answer = (await http.post(srv.rpc_url, content=row.body)).json()
                assert answer["error"]["code"] == row.code, row.id
                if row.code == -32700:
                    assert answer == {
                        "jsonrpc": "2.0",
                        "error": {"code": -32700, "message": "Parse error"},
                        "id": None,
                    }
                # Same pooled keep-alive connection: the server did not drop it.
                assert isinstance((await http.post(srv.rpc_url, json=GET_SLOT)).json()["result"], int), row.id

    with caplog.at_level(logging.ERROR, logger="psyche.localnet"):
        run(scenario)
    assert not [r for r in caplog.records if r.exc_info], [r.getMessage() for r in caplog.records]


def test_ws_bad_messages_get_their_error_and_keep_the_connection(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        async with localnet() as srv, connect(srv.ws_url, max_size=None) as ws:
            for row in [r for r in ROWS if r.code == -32700]:
                await ws.send(row.body)  # a binary frame: the bytes exactly as in the HTTP rows
                assert json.loads(await ws.recv())["error"]["code"] == -32700, row.id
                # Still open: an unsubscribe of nothing is answered (and starts no notifications).
                await ws.send(
                    json.dumps({"jsonrpc": "2.0", "id": 3, "method": "slotUnsubscribe", "params": [9]})
                )
                assert json.loads(await ws.recv())["id"] == 3, row.id

    with caplog.at_level(logging.ERROR, logger="psyche.localnet"):
        run(scenario)
    assert not [r for r in caplog.records if r.exc_info], [r.getMessage() for r in caplog.records]
