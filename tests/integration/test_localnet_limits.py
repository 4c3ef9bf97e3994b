"""Solana's per-transaction limits on the local chain: packet size, duplicate keys, compute budget and fee.

Real ed25519-signed transactions over JSON-RPC to the real server; error texts and codes are agave's.
"""

from __future__ import annotations

import base64
from typing import Any

from solana.rpc.async_api import AsyncClient
from solders.compute_budget import set_compute_unit_limit, set_compute_unit_price
from solders.hash import Hash
from solders.instruction import CompiledInstruction, Instruction
from solders.keypair import Keypair
from solders.message import Message
from solders.pubkey import Pubkey
from solders.system_program import TransferParams, transfer
from solders.transaction import VersionedTransaction

from psyche.base58 import b58encode
from psyche.chain.instructions import authorization_create
from psyche.chain.transactions import PACKET_DATA_SIZE
from psyche.localnet.budget import COMPUTE_BUDGET_PROGRAM_ID
from psyche.localnet.executor import NATIVE_UNITS
from tests.support.localnet import fund, localnet, raw_rpc, run, sign

TX_TYPE = "solana_sdk::transaction::versioned::VersionedTransaction"
LAMPORTS = 1_000_000


def _transfer(src: Keypair, dst: Pubkey, lamports: int, pad: int = 0) -> Instruction:
    ix = transfer(TransferParams(from_pubkey=src.pubkey(), to_pubkey=dst, lamports=lamports))
    return Instruction(ix.program_id, bytes(ix.data) + bytes(pad), ix.accounts)


async def _send_raw(url: str, raw: bytes, encoding: str = "base64", **config: Any) -> Any:
    text = base64.b64encode(raw).decode() if encoding == "base64" else b58encode(raw)
    params = [text, {"encoding": encoding, **config}]
    return await raw_rpc(url, {"jsonrpc": "2.0", "id": 1, "method": "sendTransaction", "params": params})


def _padded_transfer(payer: Keypair, dst: Pubkey, blockhash: Hash, size: int) -> bytes:
    """A signed System transfer, its data padded (System ignores trailing bytes) to ``size`` bytes."""
    base = len(bytes(sign([_transfer(payer, dst, LAMPORTS)], payer, blockhash)))
    pad = size - base - 1  # the data length's compact-u16 grows from 1 to 2 bytes past 127
    raw = bytes(sign([_transfer(payer, dst, LAMPORTS, pad)], payer, blockhash))
    assert len(raw) == size
    return raw


def test_packet_size_is_enforced_with_agaves_texts() -> None:
    async def scenario() -> None:
        async with localnet() as srv, AsyncClient(srv.rpc_url) as client:
            payer, dst = Keypair(), Keypair().pubkey()
            await fund(client, payer.pubkey(), 10**9)
            blockhash = (await client.get_latest_blockhash()).value.blockhash

            fits = await _send_raw(srv.rpc_url, _padded_transfer(payer, dst, blockhash, PACKET_DATA_SIZE))
            assert "result" in fits, fits

            over = _padded_transfer(payer, dst, blockhash, PACKET_DATA_SIZE + 1)  # base64: exactly 1644 chars
            answer = await _send_raw(srv.rpc_url, over)
            assert answer["error"] == {
                "code": -32602,
                "message": f"decoded {TX_TYPE} too large: 1233 bytes (max: 1232 bytes)",
            }
            big = _padded_transfer(payer, dst, blockhash, 1236)
            answer = await _send_raw(srv.rpc_url, big)
            assert answer["error"] == {
                "code": -32602,
                "message": f"base64 encoded {TX_TYPE} too large: 1648 bytes (max: encoded/raw 1644/1232)",
            }
            answer = await _send_raw(srv.rpc_url, _padded_transfer(payer, dst, blockhash, 1300), "base58")
            assert answer["error"]["code"] == -32602
            assert answer["error"]["message"].startswith(f"base58 encoded {TX_TYPE} too large: ")
            assert answer["error"]["message"].endswith(" bytes (max: encoded/raw 1683/1232)")
            simulated = await raw_rpc(
                srv.rpc_url,
                {
                    "jsonrpc": "2.0",
                    "id": 2,
                    "method": "simulateTransaction",
                    "params": [base64.b64encode(big).decode(), {"encoding": "base64"}],
                },
            )
            assert simulated["error"]["code"] == -32602
            # Only the 1232-byte transfer landed: one fee, one transfer.
            assert (await client.get_balance(dst)).value == LAMPORTS
            assert (await client.get_balance(payer.pubkey())).value == 10**9 - 5_000 - LAMPORTS

    run(scenario)


def test_an_account_listed_twice_is_account_loaded_twice_and_never_lands() -> None:
    async def scenario() -> None:
        async with localnet() as srv, AsyncClient(srv.rpc_url) as client:
            payer, dst = Keypair(), Keypair().pubkey()
            await fund(client, payer.pubkey(), 10**9)
            blockhash = (await client.get_latest_blockhash()).value.blockhash
            keys = [payer.pubkey(), dst, dst, Pubkey.default()]
            data = bytes(_transfer(payer, dst, LAMPORTS).data)
            message = Message.new_with_compiled_instructions(
                1, 0, 1, keys, blockhash, [CompiledInstruction(3, data, bytes([0, 2]))]
            )
            raw = bytes(VersionedTransaction(message, [payer]))
            answer = await _send_raw(srv.rpc_url, raw)
            assert answer["error"]["code"] == -32002
            assert answer["error"]["message"] == "Transaction simulation failed: Account loaded twice"
            assert answer["error"]["data"]["err"] == "AccountLoadedTwice"
            # Without preflight the node answers a signature, but the bank never locks it: it never lands.
            skipped = await _send_raw(srv.rpc_url, raw, skipPreflight=True)
            signature = skipped["result"]
            statuses = await raw_rpc(
                srv.rpc_url,
                {"jsonrpc": "2.0", "id": 3, "method": "getSignatureStatuses", "params": [[signature]]},
            )
            assert statuses["result"]["value"] == [None]
            assert (await client.get_balance(payer.pubkey())).value == 10**9
            assert (await client.get_balance(dst)).value == 0

    run(scenario)


def _simulate_err(answer: dict[str, Any]) -> tuple[str, Any, list[str]]:
    error = answer["error"]
    assert error["code"] == -32002, error
    return error["message"], error["data"]["err"], error["data"]["logs"]


def test_compute_budget_limit_price_and_duplicates() -> None:
    async def scenario() -> None:
        async with localnet() as srv, AsyncClient(srv.rpc_url) as client:
            payer, dst = Keypair(), Keypair().pubkey()
            await fund(client, payer.pubkey(), 10**9)
            blockhash = (await client.get_latest_blockhash()).value.blockhash
            cb = str(COMPUTE_BUDGET_PROGRAM_ID)

            # A native program out of units: ComputationalBudgetExceeded.
            tight = [set_compute_unit_limit(NATIVE_UNITS + 10), _transfer(payer, dst, LAMPORTS)]
            message, err, logs = _simulate_err(
                await _send_raw(srv.rpc_url, bytes(sign(tight, payer, blockhash)))
            )
            assert message == (
                "Transaction simulation failed: Error processing Instruction 1: Computational budget exceeded"
            )
            assert err == {"InstructionError": [1, "ComputationalBudgetExceeded"]}
            assert logs[:2] == [f"Program {cb} invoke [1]", f"Program {cb} success"]

            # A (would-be BPF) Psyche program out of units: ProgramFailedToComplete, with Solana's log lines.
            grant = authorization_create(payer.pubkey(), payer.pubkey(), Pubkey.default(), b"scope")
            low = [set_compute_unit_limit(1_000), grant]
            message, err, logs = _simulate_err(
                await _send_raw(srv.rpc_url, bytes(sign(low, payer, blockhash)))
            )
            assert err == {"InstructionError": [1, "ProgramFailedToComplete"]}
            assert message.endswith("Error processing Instruction 1: Program failed to complete")
            program = str(grant.program_id)
            assert logs[-2:] == [
                f"Program {program} consumed 850 of 850 compute units",
                f"Program {program} failed: exceeded CUs meter at BPF instruction",
            ]

            # Two SetComputeUnitLimit: refused before execution, nothing charged.
            twice = [
                set_compute_unit_limit(1_000),
                set_compute_unit_limit(2_000),
                _transfer(payer, dst, LAMPORTS),
            ]
            message, err, _ = _simulate_err(
                await _send_raw(srv.rpc_url, bytes(sign(twice, payer, blockhash)))
            )
            assert err == {"DuplicateInstruction": 1}
            assert message == (
                "Transaction simulation failed: "
                "Transaction contains a duplicate instruction (1) that is not allowed"
            )
            assert (await client.get_balance(payer.pubkey())).value == 10**9

            # A price: the prioritization fee is ceil(price x limit / 1e6) lamports on top of 5000.
            priced = [
                set_compute_unit_limit(1_000),
                set_compute_unit_price(2_500_000),
                _transfer(payer, dst, LAMPORTS),
            ]
            tx = sign(priced, payer, blockhash)
            # solana-py annotates MessageV0 but sends any message's bytes; the local chain prices a legacy one
            fee = await client.get_fee_for_message(tx.message)  # type: ignore[arg-type]
            assert fee.value == 5_000 + 2_500
            sent = await _send_raw(srv.rpc_url, bytes(tx))
            await client.confirm_transaction(tx.signatures[0], sleep_seconds=0.01)
            landed = (
                await client.get_transaction(tx.signatures[0], max_supported_transaction_version=0)
            ).value
            assert landed is not None and landed.transaction.meta is not None, sent
            assert landed.transaction.meta.fee == 7_500
            assert landed.transaction.meta.compute_units_consumed == 3 * NATIVE_UNITS
            assert (await client.get_balance(payer.pubkey())).value == 10**9 - 7_500 - LAMPORTS

    run(scenario)
