"""RpcClient request shapes, fallback policy, batch, tx-error parsing and URL redaction (MockTransport)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from solders.hash import Hash
from solders.keypair import Keypair
from solders.message import Message
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.system_program import TransferParams, transfer
from solders.transaction import Transaction

from psyche.chain.endpoints import Endpoint, redact, redacted_labels, scrub
from psyche.chain.program_errors import describe_tx_error, program_error_of
from psyche.chain.rpc import AccountInfo, RpcClient, parse_transaction_error
from psyche.errors import ConfigError, RpcError, RpcResponseError, RpcUnavailable, TransactionFailed

KEY = Pubkey.from_string("SysvarC1ock11111111111111111111111111111111")
OWNER = Pubkey.from_string("BPFLoaderUpgradeab1e11111111111111111111111")
A, B, C = "http://a.test/", "http://b.test/", "http://c.test/"

Handler = Callable[[httpx.Request], httpx.Response]


def ok(request: httpx.Request, result: Any) -> httpx.Response:
    body = json.loads(request.content)
    return httpx.Response(200, json={"jsonrpc": "2.0", "id": body["id"], "result": result})


def account_json(data: bytes, lamports: int = 7) -> dict[str, Any]:
    return {
        "data": [base64.b64encode(data).decode(), "base64"],
        "owner": str(OWNER),
        "lamports": lamports,
        "executable": False,
        "rentEpoch": 0,
        "space": len(data),
    }


class Recorder:
    """Routes each host to a handler and records the (host, method) of every request."""

    def __init__(self, routes: dict[str, Handler]) -> None:
        self.routes = routes
        self.seen: list[tuple[str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        method = [b["method"] for b in body] if isinstance(body, list) else body["method"]
        self.seen.append((request.url.host, method))
        return self.routes[request.url.host](request)

    def hosts(self) -> list[str]:
        return [host for host, _ in self.seen]


def make_client(
    routes: dict[str, Handler], urls: list[str] | None = None, **kw: Any
) -> tuple[RpcClient, Recorder]:
    rec = Recorder(routes)
    kw.setdefault("sleep", lambda _s: None)
    client = RpcClient(urls or [A], transport=httpx.MockTransport(rec), **kw)
    return client, rec


def refuse(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("[Errno 111] Connection refused", request=request)


def status(code: int) -> Handler:
    return lambda request: httpx.Response(code, text="nope")


# -- request shapes --------------------------------------------------------------------------------------


def test_get_account_info_asks_base64_confirmed_and_decodes() -> None:
    sent: list[Any] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        return ok(request, {"context": {"slot": 5}, "value": account_json(b"\x01\x02\x03")})

    client, _ = make_client({"a.test": handler})
    info = client.get_account_info(KEY)
    assert info == AccountInfo(b"\x01\x02\x03", OWNER, 7)
    data, owner, lamports = info  # usable as the (data, owner, lamports) triple
    assert (data, owner, lamports) == (b"\x01\x02\x03", OWNER, 7)
    (body,) = sent
    assert body["method"] == "getAccountInfo"
    assert body["params"][0] == str(KEY)
    assert body["params"][1]["encoding"] == "base64"
    assert body["params"][1]["commitment"] == "confirmed"
    assert client.round_trips == 1


def test_missing_account_is_none() -> None:
    client, _ = make_client({"a.test": lambda r: ok(r, {"context": {"slot": 5}, "value": None})})
    assert client.get_account_info(KEY) is None


def test_get_multiple_accounts_chunks_by_100_in_order() -> None:
    keys = [Keypair().pubkey() for _ in range(205)]
    sizes: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        chunk = body["params"][0]
        sizes.append(len(chunk))
        value = [None if k == str(keys[150]) else account_json(k.encode()[:4]) for k in chunk]
        return ok(request, {"context": {"slot": 1}, "value": value})

    client, _ = make_client({"a.test": handler})
    out = client.get_multiple_accounts(keys)
    assert sizes == [100, 100, 5]
    assert client.round_trips == 3
    assert len(out) == 205
    assert out[150] is None
    first = out[0]
    assert first is not None and first.data == str(keys[0]).encode()[:4]


def test_get_program_accounts_filters_are_datasize_and_base58_memcmp() -> None:
    sent: list[Any] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        return ok(request, [{"pubkey": str(KEY), "account": account_json(b"\xaa")}])

    client, _ = make_client({"a.test": handler})
    zero_led = Pubkey(b"\x00\x00" + bytes(range(1, 31)))
    out = client.get_program_accounts(OWNER, [64, (0, bytes(zero_led)), (8, b"\x01")])
    assert out == [(KEY, b"\xaa")]
    config = sent[0]["params"][1]
    assert config["encoding"] == "base64"
    assert config["commitment"] == "confirmed"
    # base58 as solders spells a pubkey (leading zero bytes become '1's).
    assert str(zero_led).startswith("11")
    assert config["filters"] == [
        {"dataSize": 64},
        {"memcmp": {"offset": 0, "encoding": "base58", "bytes": str(zero_led)}},
        {"memcmp": {"offset": 8, "encoding": "base58", "bytes": "2"}},
    ]


def test_scalar_helpers() -> None:
    blockhash = str(Hash.new_unique())
    results: dict[str, Any] = {
        "getBalance": {"context": {"slot": 1}, "value": 42},
        "getLatestBlockhash": {
            "context": {"slot": 1},
            "value": {"blockhash": blockhash, "lastValidBlockHeight": 9},
        },
        "getMinimumBalanceForRentExemption": 1_000,
        "getSlot": 77,
        "getHealth": "ok",
        "requestAirdrop": str(Signature.default()),
    }
    client, _ = make_client({"a.test": lambda r: ok(r, results[json.loads(r.content)["method"]])})
    assert client.get_balance(KEY) == 42
    assert client.get_latest_blockhash() == (Hash.from_string(blockhash), 9)
    assert client.get_minimum_balance_for_rent_exemption(100) == 1_000
    assert client.get_slot() == 77
    assert client.get_health() == "ok"
    assert client.request_airdrop(KEY, 5) == Signature.default()


def test_unexpected_result_shape_is_an_rpc_error_naming_the_method() -> None:
    client, _ = make_client({"a.test": lambda r: ok(r, "not an account")})
    with pytest.raises(RpcError, match=r"getAccountInfo: unexpected response from http://a\.test/"):
        client.get_account_info(KEY)


# -- fallback policy -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "failing",
    [
        refuse,
        status(429),
        status(500),
        status(503),
        status(401),
        status(403),
        status(404),
        lambda r: httpx.Response(200, text="<html>gateway</html>"),
        lambda r: httpx.Response(200, json={"hello": "world"}),
    ],
    ids=["refused", "429", "500", "503", "401", "403", "404", "html-200", "json-not-rpc"],
)
def test_failure_falls_back_to_next_endpoint_and_sticks(failing: Handler) -> None:
    events: list[tuple[str, str, str]] = []
    client, rec = make_client(
        {"a.test": failing, "b.test": lambda r: ok(r, 1)},
        [A, B],
        on_fallback=lambda *e: events.append(e),
    )
    assert client.call("getSlot") == 1
    assert client.current_endpoint == B
    assert client.call("getSlot") == 1
    assert rec.hosts() == ["a.test", "b.test", "b.test"]
    assert [e[:2] for e in events] == [(A, B)]
    assert client.round_trips == 3


def test_timeout_falls_back() -> None:
    def hang(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    client, _ = make_client({"a.test": hang, "b.test": lambda r: ok(r, 1)}, [A, B], timeout=0.5)
    assert client.call("getSlot") == 1
    assert client.current_endpoint == B


def test_jsonrpc_error_is_an_answer_not_retried() -> None:
    def error(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        err = {"code": -32602, "message": "Invalid param: WrongSize", "data": {"x": 1}}
        return httpx.Response(200, json={"jsonrpc": "2.0", "id": body["id"], "error": err})

    client, rec = make_client({"a.test": error, "b.test": lambda r: ok(r, 1)}, [A, B])
    with pytest.raises(RpcResponseError) as info:
        client.call("getAccountInfo", ["x"])
    assert (info.value.code, info.value.rpc_message, info.value.data) == (
        -32602,
        "Invalid param: WrongSize",
        {"x": 1},
    )
    assert rec.hosts() == ["a.test"]


def test_jsonrpc_error_with_http_400_is_an_answer_but_403_is_not() -> None:
    def error_with(code: int) -> Handler:
        return lambda r: httpx.Response(
            code, json={"jsonrpc": "2.0", "id": 1, "error": {"code": -1, "message": "m"}}
        )

    client, rec = make_client({"a.test": error_with(400), "b.test": lambda r: ok(r, 1)}, [A, B])
    with pytest.raises(RpcResponseError):
        client.call("getSlot")
    assert rec.hosts() == ["a.test"]
    client, rec = make_client({"a.test": error_with(403), "b.test": lambda r: ok(r, 1)}, [A, B])
    assert client.call("getSlot") == 1
    assert rec.hosts() == ["a.test", "b.test"]


def rpc_error(code: int, message: str, http_status: int = 200) -> Handler:
    def answer(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        items = body if isinstance(body, list) else [body]
        errors = [
            {"jsonrpc": "2.0", "id": item["id"], "error": {"code": code, "message": message}}
            for item in items
        ]
        return httpx.Response(http_status, json=errors if isinstance(body, list) else errors[0])

    return answer


@pytest.mark.parametrize(
    ("code", "message", "http_status"),
    [
        (-32005, "Node is behind by 42 slots", 200),
        (-32016, "Minimum context slot has not been reached", 200),
        (-32429, "rate limit exceeded", 200),
        (-32005, "Node is unhealthy", 400),
    ],
    ids=["node-behind", "min-context-slot", "rate-limited", "node-behind-http-400"],
)
def test_transient_jsonrpc_error_falls_back_and_sticks(code: int, message: str, http_status: int) -> None:
    events: list[tuple[str, str, str]] = []
    client, rec = make_client(
        {"a.test": rpc_error(code, message, http_status), "b.test": lambda r: ok(r, 1)},
        [A, B],
        on_fallback=lambda *e: events.append(e),
    )
    assert client.call("getSlot") == 1
    assert client.call("getSlot") == 1  # sticky: the node behind is not asked again
    assert rec.hosts() == ["a.test", "b.test", "b.test"]
    assert events == [(A, B, f"RPC error {code}: {message}")]


def test_transient_jsonrpc_error_everywhere_is_a_transient_rpc_unavailable() -> None:
    client, rec = make_client(
        {"a.test": rpc_error(-32005, "Node is behind by 42 slots"), "b.test": status(503)}, [A, B]
    )
    with pytest.raises(RpcUnavailable) as info:
        client.batch([("getSlot", None), ("getBalance", ["x"])])
    assert info.value.failures == {
        A: "RPC error -32005: Node is behind by 42 slots",
        B: "HTTP 503 Service Unavailable",
    }
    assert info.value.transient
    assert rec.hosts() == ["a.test", "b.test"] * 2  # retried on the next pass, like a 503


def test_endpoints_that_all_refuse_for_good_are_not_transient() -> None:
    client, rec = make_client({"a.test": status(401), "b.test": status(404)}, [A, B])
    with pytest.raises(RpcUnavailable) as info:
        client.call("getSlot")
    assert not info.value.transient
    assert rec.hosts() == ["a.test", "b.test"]
    client, _ = make_client({"a.test": status(401), "b.test": refuse}, [A, B])
    with pytest.raises(RpcUnavailable) as info:
        client.call("getSlot")
    assert info.value.transient  # b may come back


def test_sticky_endpoint_tried_first_then_others_in_order() -> None:
    alive = {"a.test": False, "b.test": True, "c.test": True}

    def route(request: httpx.Request) -> httpx.Response:
        return ok(request, request.url.host) if alive[request.url.host] else refuse(request)

    client, rec = make_client(dict.fromkeys(alive, route), [A, B, C])
    assert client.call("getSlot") == "b.test"
    alive["b.test"] = False
    alive["a.test"] = True
    # b (sticky) fails -> a (first in order) answers, not c.
    assert client.call("getSlot") == "a.test"
    assert rec.hosts() == ["a.test", "b.test", "b.test", "a.test"]


def test_all_fail_lists_every_endpoint_redacted_after_backoff_passes() -> None:
    delays: list[float] = []
    keyed = "https://mainnet.helius-rpc.com/?api-key=0123-secret-4567"
    node = "https://x.quiknode.pro/abcdef0123456789abcdef0123456789/"
    client, rec = make_client(
        {"mainnet.helius-rpc.com": status(429), "x.quiknode.pro": refuse, "c.test": status(401)},
        [keyed, node, C],
        sleep=delays.append,
        max_rounds=3,
        backoff_base=0.1,
        backoff_cap=0.15,
    )
    with pytest.raises(RpcUnavailable) as info:
        client.call("getSlot")
    message = str(info.value)
    assert "secret" not in message and "abcdef0123456789" not in message
    assert info.value.failures == {
        "https://mainnet.helius-rpc.com/?api-key=***": "HTTP 429 Too Many Requests",
        "https://x.quiknode.pro/***/": "ConnectError: [Errno 111] Connection refused",
        C: "HTTP 401 Unauthorized",
    }
    # 401 is not asked again within the request; the retryable ones get every pass.
    assert (
        rec.hosts()
        == ["mainnet.helius-rpc.com", "x.quiknode.pro", "c.test"]
        + [
            "mainnet.helius-rpc.com",
            "x.quiknode.pro",
        ]
        * 2
    )
    assert delays == [0.1, 0.15]


def test_no_endpoints_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        RpcClient([])


# -- batch -----------------------------------------------------------------------------------------------


def test_batch_is_one_post_and_results_follow_request_order() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        bodies = json.loads(request.content)
        answers = [{"jsonrpc": "2.0", "id": b["id"], "result": b["method"]} for b in bodies]
        return httpx.Response(200, json=list(reversed(answers)))

    client, rec = make_client({"a.test": handler})
    assert client.batch([("getSlot", None), ("getBalance", [str(KEY)])]) == ["getSlot", "getBalance"]
    assert client.round_trips == 1
    assert rec.seen == [("a.test", ["getSlot", "getBalance"])]
    assert client.batch([]) == []
    assert client.round_trips == 1


def test_batch_item_error_and_whole_batch_refusal_raise() -> None:
    def item_error(request: httpx.Request) -> httpx.Response:
        bodies = json.loads(request.content)
        return httpx.Response(
            200,
            json=[
                {"jsonrpc": "2.0", "id": bodies[0]["id"], "result": 1},
                {
                    "jsonrpc": "2.0",
                    "id": bodies[1]["id"],
                    "error": {"code": -32601, "message": "Method not found"},
                },
            ],
        )

    client, _ = make_client({"a.test": item_error})
    with pytest.raises(RpcResponseError, match="-32601"):
        client.batch([("getSlot", None), ("nope", None)])

    refused = {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": "batch not allowed"}}
    client, _ = make_client({"a.test": lambda r: httpx.Response(200, json=refused)})
    with pytest.raises(RpcResponseError, match="batch not allowed"):
        client.batch([("getSlot", None)])


# -- transactions ----------------------------------------------------------------------------------------

PREFLIGHT: dict[str, Any] = {
    "code": -32002,
    "message": "Transaction simulation failed: Error processing Instruction 0: custom program error: 0x1773",
    "data": {
        "accounts": None,
        "err": {"InstructionError": [0, {"Custom": 6003}]},
        "logs": [
            "Program 4SHugWqSXwKE5fqDchkJcPEqnoZE22VYKtSTVm7axbT7 invoke [1]",
            "Program log: AnchorError thrown in programs/x/src/lib.rs:42. Error Code: InvalidRunState. "
            "Error Number: 6003. Error Message: Invalid run state.",
            "Program 4SHugWqSXwKE5fqDchkJcPEqnoZE22VYKtSTVm7axbT7 failed: custom program error: 0x1773",
        ],
        "unitsConsumed": 1234,
    },
}


def test_parse_transaction_error_extracts_program_error_logs_and_anchor_name() -> None:
    error = RpcResponseError(PREFLIGHT["code"], PREFLIGHT["message"], PREFLIGHT["data"])
    failed = parse_transaction_error(error, signature="sig")
    assert isinstance(failed, TransactionFailed)
    assert failed.program_error == 6003
    assert failed.logs == PREFLIGHT["data"]["logs"]
    assert failed.signature == "sig"
    assert str(failed) == f"{PREFLIGHT['message']} [InvalidRunState (6003): Invalid run state.]"


def test_parse_transaction_error_without_simulation_data() -> None:
    failed = parse_transaction_error(
        RpcResponseError(-32002, "Blockhash not found", {"err": "BlockhashNotFound"})
    )
    assert (failed.program_error, failed.logs, str(failed)) == (None, [], "Blockhash not found")


@pytest.mark.parametrize(
    ("err", "number", "text"),
    [
        (
            {"InstructionError": [1, {"Custom": 6008}]},
            6008,
            "instruction 1: custom program error 6008 (0x1778)",
        ),
        ({"InstructionError": [0, "InvalidAccountData"]}, None, "instruction 0: InvalidAccountData"),
        ("AccountNotFound", None, "AccountNotFound"),
        ({"InstructionError": [0, {"Custom": True}]}, None, "instruction 0: {'Custom': True}"),
        (None, None, "None"),
    ],
)
def test_program_error_of_and_describe(err: Any, number: int | None, text: str) -> None:
    assert program_error_of(err) == number
    assert describe_tx_error(err) == text


def _signed_transfer() -> Transaction:
    payer = Keypair()
    ix = transfer(TransferParams(from_pubkey=payer.pubkey(), to_pubkey=KEY, lamports=1))
    return Transaction([payer], Message([ix], payer.pubkey()), Hash.new_unique())


def test_send_transaction_posts_base64_and_maps_preflight_failure() -> None:
    tx = _signed_transfer()
    sent: list[Any] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        sent.append(body)
        if len(sent) == 1:
            return ok(request, str(tx.signatures[0]))
        return httpx.Response(200, json={"jsonrpc": "2.0", "id": body["id"], "error": PREFLIGHT})

    client, rec = make_client({"a.test": handler, "b.test": handler}, [A, B])
    assert client.send_transaction(tx) == tx.signatures[0]
    assert base64.b64decode(sent[0]["params"][0]) == bytes(tx)
    assert sent[0]["params"][1]["encoding"] == "base64"
    assert sent[0]["params"][1]["preflightCommitment"] == "confirmed"
    with pytest.raises(TransactionFailed) as info:
        client.send_transaction(tx)
    assert info.value.program_error == 6003
    assert info.value.signature == str(tx.signatures[0])
    assert isinstance(info.value.__cause__, RpcResponseError)
    assert rec.hosts() == ["a.test", "a.test"]


def test_confirm_transaction_polls_until_confirmed() -> None:
    clock = [0.0]
    answers = iter(
        [
            None,
            {
                "slot": 9,
                "confirmations": 0,
                "err": None,
                "status": {"Ok": None},
                "confirmationStatus": "processed",
            },
        ]
    )
    final = {
        "slot": 10,
        "confirmations": None,
        "err": None,
        "status": {"Ok": None},
        "confirmationStatus": "confirmed",
    }

    def handler(request: httpx.Request) -> httpx.Response:
        return ok(request, {"context": {"slot": 1}, "value": [next(answers, final)]})

    def sleep(seconds: float) -> None:
        clock[0] += seconds

    client, rec = make_client({"a.test": handler}, sleep=sleep, monotonic=lambda: clock[0])
    assert client.confirm_transaction(Signature.default(), timeout=5, poll_interval=0.5) == 10
    assert rec.seen == [("a.test", "getSignatureStatuses")] * 3
    assert clock[0] == 1.0


def test_confirm_transaction_failure_carries_logs_and_times_out() -> None:
    clock = [0.0]
    err = {"InstructionError": [0, {"Custom": 6008}]}
    statuses = {
        "slot": 3,
        "confirmations": None,
        "err": err,
        "status": {"Err": err},
        "confirmationStatus": "confirmed",
    }
    tx_result = {
        "slot": 3,
        "meta": {"err": err, "logMessages": ["Program log: no"]},
        "transaction": ["", "base64"],
    }

    def handler(request: httpx.Request) -> httpx.Response:
        method = json.loads(request.content)["method"]
        if method == "getTransaction":
            return ok(request, tx_result)
        return ok(request, {"context": {"slot": 1}, "value": [statuses]})

    client, _ = make_client({"a.test": handler})
    with pytest.raises(TransactionFailed) as info:
        client.confirm_transaction(Signature.default())
    assert info.value.program_error == 6008
    assert info.value.logs == ["Program log: no"]
    assert "custom program error 6008" in str(info.value)

    def sleep(seconds: float) -> None:
        clock[0] += seconds

    never = make_client(
        {"a.test": lambda r: ok(r, {"context": {"slot": 1}, "value": [None]})},
        sleep=sleep,
        monotonic=lambda: clock[0],
    )[0]
    with pytest.raises(TransactionFailed, match="not confirmed within 2s"):
        never.confirm_transaction(Signature.default(), timeout=2, poll_interval=0.5)


def test_get_transaction_returns_logs_or_none() -> None:
    results = iter([None, {"slot": 4, "meta": {"err": None, "logMessages": ["a", "b"]}}])
    client, _ = make_client({"a.test": lambda r: ok(r, next(results))})
    assert client.get_transaction(Signature.default()) is None
    record = client.get_transaction(Signature.default())
    assert record is not None and (record.slot, record.logs, record.err) == (4, ["a", "b"], None)


# -- redaction -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://api.devnet.solana.com", "https://api.devnet.solana.com"),
        ("http://127.0.0.1:8899", "http://127.0.0.1:8899"),
        (
            "https://mainnet.helius-rpc.com/?api-key=9f8e7d6c-aaaa",
            "https://mainnet.helius-rpc.com/?api-key=***",
        ),
        ("wss://mainnet.helius-rpc.com/?api-key=k&x=1", "wss://mainnet.helius-rpc.com/?api-key=***&x=***"),
        ("https://user:pa55@rpc.example.com/v1", "https://***@rpc.example.com/v1"),
        ("https://token@rpc.example.com", "https://***@rpc.example.com"),
        (
            "https://red-frosty.solana-mainnet.quiknode.pro/abcdef0123456789abcdef0123456789/",
            "https://red-frosty.solana-mainnet.quiknode.pro/***/",
        ),
        (
            "https://solana-mainnet.g.alchemy.com/v2/AbCdEfGhIjKlMnOpQrStUvWxYz",
            "https://solana-mainnet.g.alchemy.com/v2/***",
        ),
        ("https://x.rpcpool.com/1b2c3d4e-5f60-7182-93a4-b5c6d7e8f901", "https://x.rpcpool.com/***"),
        ("https://rpc.example.com/solana-mainnet/rpc", "https://rpc.example.com/solana-mainnet/rpc"),
        ("https://rpc.example.com/path#frag", "https://rpc.example.com/path#***"),
        ("http://[::1]:8899/", "http://[::1]:8899/"),
        ("http://host:notaport/", "http://host:***/"),
    ],
)
def test_redact(url: str, shown: str) -> None:
    assert redact(url) == shown


def test_redacted_labels_stay_distinct_and_endpoint_repr_hides_keys() -> None:
    urls = ["https://h.example/?api-key=one", "https://h.example/?api-key=two"]
    assert redacted_labels(urls) == ["https://h.example/?api-key=***", "https://h.example/?api-key=*** #2"]
    endpoint = Endpoint("https://h.example/?api-key=one", "wss://h.example/?api-key=one")
    assert "one" not in repr(endpoint) and "one" not in str(endpoint)
    assert repr(Endpoint("http://127.0.0.1:8899")) == "Endpoint(http='http://127.0.0.1:8899', ws=None)"
    with pytest.raises(AttributeError):
        endpoint.http = "x"  # type: ignore[misc]  # the point: it is frozen


# Every shape a user may paste into RPC=/WS_RPC=/--rpc, well formed or not: (value, secret, shown).
SHAPES = [
    (
        "https://mainnet.helius-rpc.com/?api-key=4a1b2c3d-0000",
        "4a1b2c3d-0000",
        "https://mainnet.helius-rpc.com/?api-key=***",
    ),
    ("127.0.0.1:8899/?api-key=s3cretkey", "s3cretkey", "127.0.0.1:8899/?api-key=***"),
    ("htp:/rpc.example.com/?api-key=s3cretkey", "s3cretkey", "htp:/rpc.example.com/?api-key=***"),
    ("notaurl?api-key=s3cretkey", "s3cretkey", "notaurl?api-key=***"),
    ("wss://h.example/?token=s3cretkey&x=1", "s3cretkey", "wss://h.example/?token=***&x=***"),
    ("https://user:pa55word@rpc.example.com/", "pa55word", "https://***@rpc.example.com/"),
    ("user:pa55word@rpc.example.com:8899", "pa55word", "***@rpc.example.com:8899"),
    ("ht tp://user:pa55word@rpc.example.com/", "pa55word", "***@rpc.example.com/"),
    ("https://user:pa/55word@rpc.example.com/", "55word", "https://***@rpc.example.com/"),
    ("https://rpc.example.com:pa55word/", "pa55word", "https://rpc.example.com:***/"),
    ("https://h.example/x#pa55word", "pa55word", "https://h.example/x#***"),
    ("https://h.example/?pa55wordpa55wordpa55word", "pa55wordpa55word", "https://h.example/?***"),
    (
        "https://red-frosty.solana-mainnet.quiknode.pro/abcdef0123456789abcdef0123456789/",
        "abcdef0123456789",
        "https://red-frosty.solana-mainnet.quiknode.pro/***/",
    ),
    (
        "red-frosty.solana-mainnet.quiknode.pro/abcdef0123456789abcdef0123456789",
        "abcdef0123456789",
        "red-frosty.solana-mainnet.quiknode.pro/***",
    ),
    (
        "https://solana-mainnet.g.alchemy.com/v2/AbCdEfGhIjKlMnOpQrStUvWxYz",
        "AbCdEfGhIjKlMnOp",
        "https://solana-mainnet.g.alchemy.com/v2/***",
    ),
    ("https://x.rpcpool.com/1b2c3d4e-5f60-7182-93a4-b5c6d7e8f901", "5f60-7182", "https://x.rpcpool.com/***"),
    (
        "https://rpc.ankr.com/solana/0123456789abcdef0123456789abcdef",
        "0123456789abcdef",
        "https://rpc.ankr.com/solana/***",
    ),
    ("https://h.example/ key=AbCdEfGhIjKlMnOpQrStUvWxYz", "AbCdEfGhIjKlMnOp", "https://h.example/ ***"),
    ("0123456789abcdef0123456789abcdef", "0123456789abcdef", "***"),
    ("http://0123456789abcdef0123456789abcdef:8899/", "0123456789abcdef", "http://***:8899/"),
]


@pytest.mark.parametrize(("url", "secret", "shown"), SHAPES)
def test_redact_hides_the_secret_of_every_shape(url: str, secret: str, shown: str) -> None:
    assert secret in url
    assert redact(url) == shown
    assert secret not in redact(url)


def test_redact_cuts_a_long_value_and_keeps_names() -> None:
    assert redact("https://" + "a." * 300 + "example").endswith("…")
    assert len(redact("x/" * 500)) == 200
    assert redact("http://localhost:8899/rpc") == "http://localhost:8899/rpc"
    assert redact("") == ""


def test_scrub_replaces_the_url_and_each_secret_quoted_alone() -> None:
    url = "ws:/h.example/?api-key=s3cretkey"
    text = f"{url} isn't a valid URI; key s3cretkey"
    assert scrub(text, [url]) == "ws:/h.example/?api-key=*** isn't a valid URI; key ***"
