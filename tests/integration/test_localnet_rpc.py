"""The localnet's JSON-RPC and pubsub, driven by solana-py's own clients (an independent Solana client)."""

from __future__ import annotations

import base64
import json

import pytest
import zstandard
from solana.rpc.async_api import AsyncClient
from solana.rpc.core import RPCException
from solana.rpc.websocket_api import SolanaWsClient
from solders.hash import Hash
from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair
from solders.message import MessageV0
from solders.pubkey import Pubkey
from solders.rpc.errors import RpcCustomErrorFieldless, SendTransactionPreflightFailureMessage
from solders.rpc.responses import (
    AccountNotification,
    ProgramNotification,
    SignatureNotification,
    SlotNotification,
)
from solders.signature import Signature
from solders.system_program import TransferParams, transfer
from solders.transaction import VersionedTransaction
from spl.token import instructions as spl
from spl.token import models as splm
from spl.token.constants import TOKEN_PROGRAM_ID

from psyche.chain.instructions.system import system_create_account
from psyche.localnet.ledger import LAMPORTS_PER_SIGNATURE, MAX_PROCESSING_AGE
from tests.support.localnet import fund, localnet, raw_rpc, run, send, sign

SYSTEM = "11111111111111111111111111111111"


def _transfer(src: Keypair, dst: Pubkey, lamports: int) -> Instruction:
    return transfer(TransferParams(from_pubkey=src.pubkey(), to_pubkey=dst, lamports=lamports))


def _rpc_error(exc: RPCException) -> tuple[int, str, object]:
    """(code, message, data) of a preflight failure as solders parsed it (so the shape must be Solana's)."""
    err = exc.args[0]
    assert isinstance(err, SendTransactionPreflightFailureMessage), err
    body = json.loads(err.to_json())
    return -32002, body["message"], body["data"]


def test_airdrop_transfer_balance_and_logs() -> None:
    async def scenario() -> None:
        async with localnet() as srv, AsyncClient(srv.rpc_url) as client:
            alice, bob = Keypair(), Keypair().pubkey()
            await fund(client, alice.pubkey(), 2_000_000_000)
            assert (await client.get_balance(alice.pubkey())).value == 2_000_000_000
            sig = await send(client, [_transfer(alice, bob, 1_000_000)], alice)
            assert (await client.get_balance(bob)).value == 1_000_000
            assert (await client.get_balance(alice.pubkey())).value == 2_000_000_000 - 1_000_000 - 5_000
            status = (await client.get_signature_statuses([sig])).value[0]
            assert status is not None and status.err is None
            tx = (await client.get_transaction(sig, max_supported_transaction_version=0)).value
            assert tx is not None and tx.transaction.meta is not None
            assert tx.transaction.meta.log_messages == [
                f"Program {SYSTEM} invoke [1]",
                f"Program {SYSTEM} success",
            ]
            assert tx.transaction.meta.fee == 5_000
            info = (await client.get_account_info(bob)).value
            assert info is not None and info.owner == Pubkey.default() and info.lamports == 1_000_000

    run(scenario)


def test_bad_signature_is_refused_and_changes_nothing() -> None:
    async def scenario() -> None:
        async with localnet() as srv, AsyncClient(srv.rpc_url) as client:
            alice, bob = Keypair(), Keypair().pubkey()
            await fund(client, alice.pubkey(), 10**9)
            blockhash = (await client.get_latest_blockhash()).value.blockhash
            raw = bytearray(bytes(sign([_transfer(alice, bob, 5)], alice, blockhash)))
            raw[5] ^= 0xFF  # inside the first signature
            with pytest.raises(RPCException) as caught:
                await client.send_raw_transaction(bytes(raw))
            assert caught.value.args[0] == RpcCustomErrorFieldless.TransactionSignatureVerificationFailure
            answer = await raw_rpc(
                srv.rpc_url,
                {
                    "jsonrpc": "2.0",
                    "id": 1,
                    "method": "sendTransaction",
                    "params": [base64.b64encode(raw).decode(), {"encoding": "base64"}],
                },
            )
            assert answer["error"] == {
                "code": -32003,
                "message": "Transaction signature verification failure",
            }
            assert (await client.get_balance(alice.pubkey())).value == 10**9
            assert (await client.get_balance(bob)).value == 0

    run(scenario)


def test_stale_and_unknown_blockhash_are_blockhash_not_found() -> None:
    async def scenario() -> None:
        async with localnet(slot_ms=60_000) as srv, AsyncClient(srv.rpc_url) as client:
            alice, bob = Keypair(), Keypair().pubkey()
            await fund(client, alice.pubkey(), 10**9)
            old = (await client.get_latest_blockhash()).value.blockhash
            for _ in range(MAX_PROCESSING_AGE + 1):
                srv.chain.ledger.advance_slot()
            for blockhash in (old, Hash.new_unique()):
                with pytest.raises(RPCException) as caught:
                    await client.send_transaction(sign([_transfer(alice, bob, 5)], alice, blockhash))
                code, message, data = _rpc_error(caught.value)
                assert code == -32002
                assert message == "Transaction simulation failed: Blockhash not found"
                assert isinstance(data, dict) and data["err"] == "BlockhashNotFound"
            assert (await client.get_balance(alice.pubkey())).value == 10**9
            valid = await raw_rpc(
                srv.rpc_url, {"jsonrpc": "2.0", "id": 1, "method": "isBlockhashValid", "params": [str(old)]}
            )
            assert valid["result"]["value"] is False

    run(scenario)


def test_missing_signer_fails_atomically_with_solana_error_shape() -> None:
    async def scenario() -> None:
        async with localnet() as srv, AsyncClient(srv.rpc_url) as client:
            payer, victim, thief = Keypair(), Keypair(), Keypair().pubkey()
            await fund(client, payer.pubkey(), 10**9)
            await fund(client, victim.pubkey(), 10**9)
            good = _transfer(payer, thief, 1_000)
            unsigned = _transfer(victim, thief, 500_000_000)
            # The victim's meta claims no signature: the System program must refuse the debit.
            forged = Instruction(
                unsigned.program_id,
                unsigned.data,
                [AccountMeta(victim.pubkey(), False, True), AccountMeta(thief, False, True)],
            )
            with pytest.raises(RPCException) as caught:
                await send(client, [good, forged], payer)
            code, message, data = _rpc_error(caught.value)
            assert code == -32002
            expected = "Error processing Instruction 1: missing required signature for instruction"
            assert message == f"Transaction simulation failed: {expected}"
            assert isinstance(data, dict) and data["err"] == {
                "InstructionError": [1, "MissingRequiredSignature"]
            }
            # Without preflight it lands as failed: fee charged, neither transfer applied (all or nothing).
            sig = await send(client, [good, forged], payer, skip_preflight=True)
            status = (await client.get_signature_statuses([sig])).value[0]
            assert status is not None
            assert json.loads(status.to_json())["err"] == {
                "InstructionError": [1, "MissingRequiredSignature"]
            }
            assert (await client.get_balance(thief)).value == 0
            assert (await client.get_balance(payer.pubkey())).value == 10**9 - LAMPORTS_PER_SIGNATURE
            assert (await client.get_balance(victim.pubkey())).value == 10**9

    run(scenario)


def test_duplicate_transaction_is_already_processed() -> None:
    async def scenario() -> None:
        async with localnet() as srv, AsyncClient(srv.rpc_url) as client:
            alice, bob = Keypair(), Keypair().pubkey()
            await fund(client, alice.pubkey(), 10**9)
            blockhash = (await client.get_latest_blockhash()).value.blockhash
            tx = sign([_transfer(alice, bob, 1_000_007)], alice, blockhash)
            await client.send_transaction(tx)
            with pytest.raises(RPCException) as caught:
                await client.send_transaction(tx)
            code, message, data = _rpc_error(caught.value)
            assert code == -32002
            assert "This transaction has already been processed" in message
            assert isinstance(data, dict) and data["err"] == "AlreadyProcessed"
            assert (await client.get_balance(bob)).value == 1_000_007

    run(scenario)


def test_v0_message_and_version_gate_on_get_transaction() -> None:
    async def scenario() -> None:
        async with localnet() as srv, AsyncClient(srv.rpc_url) as client:
            alice, bob = Keypair(), Keypair().pubkey()
            await fund(client, alice.pubkey(), 10**9)
            blockhash = (await client.get_latest_blockhash()).value.blockhash
            msg = MessageV0.try_compile(alice.pubkey(), [_transfer(alice, bob, 1_000_042)], [], blockhash)
            sig = (await client.send_transaction(VersionedTransaction(msg, [alice]))).value
            assert (await client.get_balance(bob)).value == 1_000_042
            got = (await client.get_transaction(sig, max_supported_transaction_version=0)).value
            assert got is not None and got.transaction.version == 0
            answer = await raw_rpc(
                srv.rpc_url, {"jsonrpc": "2.0", "id": 1, "method": "getTransaction", "params": [str(sig)]}
            )
            assert answer["error"]["code"] == -32015

    run(scenario)


def test_unknown_method_batch_and_parse_errors() -> None:
    async def scenario() -> None:
        async with localnet() as srv:
            unknown = await raw_rpc(srv.rpc_url, {"jsonrpc": "2.0", "id": 3, "method": "getNothing"})
            assert unknown == {
                "jsonrpc": "2.0",
                "error": {"code": -32601, "message": "Method not found"},
                "id": 3,
            }
            batch = await raw_rpc(
                srv.rpc_url,
                [
                    {"jsonrpc": "2.0", "id": 1, "method": "getHealth"},
                    {"jsonrpc": "2.0", "id": 2, "method": "getSlot"},
                    {"jsonrpc": "2.0", "id": 3, "method": "nope"},
                ],
            )
            assert [b["id"] for b in batch] == [1, 2, 3]
            assert batch[0]["result"] == "ok" and isinstance(batch[1]["result"], int)
            assert batch[2]["error"]["code"] == -32601
            bad_key = await raw_rpc(
                srv.rpc_url, {"jsonrpc": "2.0", "id": 4, "method": "getBalance", "params": ["xyz"]}
            )
            assert bad_key["error"]["code"] == -32602
            clock = await raw_rpc(
                srv.rpc_url, {"jsonrpc": "2.0", "id": 5, "method": "localnet_advanceClock", "params": [5]}
            )
            assert clock["error"]["code"] == -32601  # test-only method is off unless asked for

    run(scenario)


def test_spl_token_mint_ata_transfer_and_program_accounts() -> None:
    async def scenario() -> None:
        async with localnet() as srv, AsyncClient(srv.rpc_url) as client:
            owner, mint, user = Keypair(), Keypair(), Keypair()
            await fund(client, owner.pubkey())
            rent = (await client.get_minimum_balance_for_rent_exemption(82)).value
            create = system_create_account(owner.pubkey(), mint.pubkey(), rent, 82, TOKEN_PROGRAM_ID)
            init = spl.initialize_mint2(
                splm.InitializeMint2Params(
                    decimals=6, program_id=TOKEN_PROGRAM_ID, mint=mint.pubkey(), mint_authority=owner.pubkey()
                )
            )
            owner_ata = spl.get_associated_token_address(owner.pubkey(), mint.pubkey())
            user_ata = spl.get_associated_token_address(user.pubkey(), mint.pubkey())
            atas = [
                spl.create_associated_token_account(owner.pubkey(), owner.pubkey(), mint.pubkey()),
                spl.create_idempotent_associated_token_account(owner.pubkey(), user.pubkey(), mint.pubkey()),
                spl.create_idempotent_associated_token_account(owner.pubkey(), user.pubkey(), mint.pubkey()),
            ]
            mint_to = spl.mint_to(
                splm.MintToParams(
                    program_id=TOKEN_PROGRAM_ID,
                    mint=mint.pubkey(),
                    dest=owner_ata,
                    mint_authority=owner.pubkey(),
                    amount=5_000_000,
                )
            )
            move = spl.transfer_checked(
                splm.TransferCheckedParams(
                    program_id=TOKEN_PROGRAM_ID,
                    source=owner_ata,
                    mint=mint.pubkey(),
                    dest=user_ata,
                    owner=owner.pubkey(),
                    amount=1_250_000,
                    decimals=6,
                )
            )
            sig = await send(client, [create, init, *atas, mint_to, move], owner, [mint])
            balance = (await client.get_token_account_balance(user_ata)).value
            assert (balance.amount, balance.decimals, balance.ui_amount_string) == ("1250000", 6, "1.25")
            tx = (await client.get_transaction(sig, max_supported_transaction_version=0)).value
            assert tx is not None and tx.transaction.meta is not None
            logs = tx.transaction.meta.log_messages or []
            assert "Program log: Instruction: TransferChecked" in logs
            assert f"Program {TOKEN_PROGRAM_ID} invoke [2]" in logs  # the ATA program's CPI
            # Overdraw: SPL Token's InsufficientFunds is Custom(1).
            overdraw = spl.transfer(
                splm.TransferParams(
                    program_id=TOKEN_PROGRAM_ID,
                    source=user_ata,
                    dest=owner_ata,
                    owner=user.pubkey(),
                    amount=10**9,
                )
            )
            await fund(client, user.pubkey())
            with pytest.raises(RPCException) as caught:
                await send(client, [overdraw], user)
            _, _, data = _rpc_error(caught.value)
            assert isinstance(data, dict) and data["err"] == {"InstructionError": [0, {"Custom": 1}]}
            assert "Program log: Error: insufficient funds" in data["logs"]
            # getProgramAccounts with dataSize + memcmp(mint at offset 0) finds both token accounts.
            found = await raw_rpc(
                srv.rpc_url,
                {
                    "jsonrpc": "2.0",
                    "id": 1,
                    "method": "getProgramAccounts",
                    "params": [
                        str(TOKEN_PROGRAM_ID),
                        {
                            "encoding": "jsonParsed",
                            "filters": [
                                {"dataSize": 165},
                                {"memcmp": {"offset": 0, "bytes": str(mint.pubkey())}},
                            ],
                        },
                    ],
                },
            )
            by_key = {item["pubkey"]: item["account"]["data"]["parsed"]["info"] for item in found["result"]}
            assert by_key[str(user_ata)]["tokenAmount"]["amount"] == "1250000"
            assert by_key[str(owner_ata)]["tokenAmount"]["uiAmountString"] == "3.75"
            b58 = await raw_rpc(
                srv.rpc_url,
                {
                    "jsonrpc": "2.0",
                    "id": 2,
                    "method": "getAccountInfo",
                    "params": [str(user_ata), {"encoding": "base58"}],
                },
            )
            assert b58["error"]["code"] == -32602  # 165 bytes is over base58's 128-byte limit

    run(scenario)


def test_pubsub_account_signature_slot_and_program_with_solana_py() -> None:
    async def scenario() -> None:
        async with localnet() as srv, AsyncClient(srv.rpc_url) as client, SolanaWsClient(srv.ws_url) as ws:
            alice, bob = Keypair(), Keypair().pubkey()
            await fund(client, alice.pubkey(), 10**9)
            account_sub = await ws.account_subscribe(pubkey=bob, encoding="base64")
            program_sub = await ws.program_subscribe(program_id=Pubkey.default(), encoding="base64")
            blockhash = (await client.get_latest_blockhash()).value.blockhash
            tx = sign([_transfer(alice, bob, 1_234_567)], alice, blockhash)
            sig_sub = await ws.signature_subscribe(signature=tx.signatures[0])
            await client.send_transaction(tx)
            seen: dict[type, object] = {}
            while len(seen) < 3:
                note = await ws.recv()
                seen.setdefault(type(note), note)
            account_note = seen[AccountNotification]
            assert isinstance(account_note, AccountNotification)
            assert account_note.subscription == account_sub.subscription_id
            assert account_note.result.value.lamports == 1_234_567
            program_note = seen[ProgramNotification]
            assert isinstance(program_note, ProgramNotification)
            assert program_note.subscription == program_sub.subscription_id
            signature_note = seen[SignatureNotification]
            assert isinstance(signature_note, SignatureNotification)
            assert signature_note.subscription == sig_sub.subscription_id
            await ws.unsubscribe(account_sub)
            await ws.unsubscribe(program_sub)
            slot_sub = await ws.slot_subscribe()
            slot_note = await ws.recv()
            assert isinstance(slot_note, SlotNotification)
            assert slot_note.subscription == slot_sub.subscription_id
            assert slot_note.result.slot >= 1

    run(scenario)


def test_account_subscribe_base64_zstd() -> None:
    import websockets

    async def scenario() -> None:
        async with localnet() as srv, AsyncClient(srv.rpc_url) as client:
            alice = Keypair()
            async with websockets.connect(srv.ws_url) as ws:
                await ws.send(
                    json.dumps(
                        {
                            "jsonrpc": "2.0",
                            "id": 1,
                            "method": "accountSubscribe",
                            "params": [
                                str(alice.pubkey()),
                                {"encoding": "base64+zstd", "commitment": "confirmed"},
                            ],
                        }
                    )
                )
                answer = json.loads(await ws.recv())
                sub_id = answer["result"]
                await fund(client, alice.pubkey(), 1_000_777)
                note = json.loads(await ws.recv())
                assert note["method"] == "accountNotification" and note["params"]["subscription"] == sub_id
                payload, encoding = note["params"]["result"]["value"]["data"]
                assert encoding == "base64+zstd"
                assert zstandard.ZstdDecompressor().decompress(base64.b64decode(payload)) == b""
                assert note["params"]["result"]["value"]["lamports"] == 1_000_777
                await ws.send(
                    json.dumps(
                        {"jsonrpc": "2.0", "id": 2, "method": "accountUnsubscribe", "params": [sub_id]}
                    )
                )
                assert json.loads(await ws.recv())["result"] is True
                await ws.send(
                    json.dumps(
                        {"jsonrpc": "2.0", "id": 3, "method": "accountUnsubscribe", "params": [sub_id]}
                    )
                )
                assert json.loads(await ws.recv())["error"]["code"] == -32602

    run(scenario)


def test_simulate_and_fee_for_message() -> None:
    async def scenario() -> None:
        async with localnet() as srv, AsyncClient(srv.rpc_url) as client:
            alice, bob = Keypair(), Keypair().pubkey()
            await fund(client, alice.pubkey(), 10**9)
            blockhash = (await client.get_latest_blockhash()).value.blockhash
            tx = sign([_transfer(alice, bob, 1_000_001)], alice, blockhash)
            # solana-py annotates MessageV0 but sends any message's bytes; the local chain prices a legacy one
            fee = (await client.get_fee_for_message(tx.message)).value  # type: ignore[arg-type]
            assert fee == 5_000
            sim = (await client.simulate_transaction(tx, accounts_addresses=[bob])).value
            assert sim.err is None and sim.accounts is not None and sim.accounts[0] is not None
            assert sim.accounts[0].lamports == 1_000_001
            assert (await client.get_balance(bob)).value == 0  # simulation commits nothing
            assert isinstance(tx.signatures[0], Signature)

    run(scenario)
