"""Program failures named from logs, signed transactions, and the one TransactionSender on a fake clock."""

from __future__ import annotations

import pytest
from solders.hash import Hash
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.transaction import Transaction

from psyche.chain import instructions as ix
from psyche.chain.program_errors import error_name, failing_program, name_failure
from psyche.chain.programs import AUTHORIZER_PROGRAM_ID, COORDINATOR_PROGRAM_ID, TREASURER_PROGRAM_ID
from psyche.chain.rpc import TransactionRecord
from psyche.chain.transactions import TransactionSender, build_transaction
from psyche.errors import TransactionFailed
from tests.support.clock import FakeClock


def test_error_names_depend_on_the_failing_program() -> None:
    assert error_name(COORDINATOR_PROGRAM_ID, 6015) == "CoordinatorErrorHalted"
    assert error_name(AUTHORIZER_PROGRAM_ID, 6000) == "AuthorizationActiveIsTrue"
    assert error_name(TREASURER_PROGRAM_ID, 6000) == "InvalidParameter"
    assert error_name(COORDINATOR_PROGRAM_ID, 2003) == "ConstraintRaw"
    assert error_name(None, 6015) is None
    assert error_name(Pubkey.new_unique(), 6015) is None


def test_failure_is_named_from_the_failed_log_line() -> None:
    logs = [
        f"Program {COORDINATOR_PROGRAM_ID} invoke [1]",
        "Program log: Instruction: Tick",
        f"Program {COORDINATOR_PROGRAM_ID} failed: custom program error: 0x177f",
    ]
    assert failing_program(logs) == (COORDINATOR_PROGRAM_ID, 0x177F)
    error = TransactionFailed("transaction failed: instruction 0: custom program error 6015", logs=logs)
    named = name_failure(error)
    assert named.message.endswith("[CoordinatorErrorHalted]")
    assert named.program_error == 6015
    assert named.logs == logs


def test_unknown_failures_are_left_as_they_are() -> None:
    error = TransactionFailed("BlockhashNotFound", logs=[])
    assert name_failure(error) is error


def test_transaction_is_signed_by_payer_and_extra_signers_once_each() -> None:
    payer, extra = Keypair(), Keypair()
    instruction = ix.system_create_account(payer.pubkey(), extra.pubkey(), 1_000, 10, COORDINATOR_PROGRAM_ID)
    tx = build_transaction([instruction], payer, [extra, payer], Hash.default())
    assert tx.message.account_keys[:2] == [payer.pubkey(), extra.pubkey()]
    assert len(tx.signatures) == 2
    tx.verify()


# --- TransactionSender on a scripted RPC and a fake clock ------------------------------------------------


class ScriptedRpc:
    """Blockhashes in the order given (the last one repeats); records sends and confirmations."""

    def __init__(self, blockhashes: list[Hash], *, fail_with: TransactionFailed | None = None) -> None:
        self.blockhashes = blockhashes
        self.fail_with = fail_with
        self.sent: list[Transaction] = []
        self.confirms: list[tuple[float, float]] = []

    def get_latest_blockhash(self) -> tuple[Hash, int]:
        blockhash = self.blockhashes.pop(0) if len(self.blockhashes) > 1 else self.blockhashes[0]
        return blockhash, 100

    def send_transaction(self, tx: Transaction) -> Signature:
        if self.fail_with is not None:
            raise self.fail_with
        self.sent.append(tx)
        return tx.signatures[0]

    def confirm_transaction(
        self, signature: Signature, timeout: float = 30.0, *, poll_interval: float = 0.5
    ) -> int:
        self.confirms.append((timeout, poll_interval))
        return 42

    def get_transaction(self, signature: Signature) -> TransactionRecord | None:
        return TransactionRecord(42, ["Program log: ok"], None)


def _sender(rpc: ScriptedRpc, clock: FakeClock, payer: Keypair) -> TransactionSender:
    return TransactionSender(
        rpc,
        payer,
        confirm_timeout=12.0,
        confirm_poll=0.25,
        blockhash_poll=0.05,
        blockhash_wait=1.0,
        sleep=clock.sleep,
        monotonic=clock.monotonic,
    )


def test_sender_signs_sends_confirms_and_returns_the_logs() -> None:
    payer, clock = Keypair(), FakeClock(start=0.0)
    first = Hash.new_unique()
    rpc = ScriptedRpc([first])
    sent = _sender(rpc, clock, payer).send(
        [ix.tick(payer.pubkey(), Pubkey.new_unique(), Pubkey.new_unique())]
    )
    [tx] = rpc.sent
    tx.verify()
    assert (sent.signature, sent.slot, sent.logs, sent.blockhash) == (
        tx.signatures[0],
        42,
        ["Program log: ok"],
        first,
    )
    assert rpc.confirms == [(12.0, 0.25)]
    assert clock.sleeps == []


def test_a_repeat_waits_for_a_fresh_blockhash() -> None:
    payer, clock = Keypair(), FakeClock(start=0.0)
    old, new = Hash.new_unique(), Hash.new_unique()
    rpc = ScriptedRpc([old, old, old, old, new])
    sender = _sender(rpc, clock, payer)
    tick = ix.tick(payer.pubkey(), Pubkey.new_unique(), Pubkey.new_unique())
    sender.send([tick])
    assert sender.send([tick]).blockhash == new
    assert clock.sleeps == [0.05, 0.05, 0.05]  # three more reads of the old blockhash, then the new one
    assert [tx.message.recent_blockhash for tx in rpc.sent] == [old, new]


def test_different_instructions_under_the_same_blockhash_do_not_wait() -> None:
    payer, clock = Keypair(), FakeClock(start=0.0)
    rpc = ScriptedRpc([Hash.new_unique()])
    sender = _sender(rpc, clock, payer)
    sender.send([ix.tick(payer.pubkey(), Pubkey.new_unique(), Pubkey.new_unique())])
    sender.send([ix.tick(payer.pubkey(), Pubkey.new_unique(), Pubkey.new_unique())])
    assert len(rpc.sent) == 2 and clock.sleeps == []


def test_a_chain_stuck_on_one_blockhash_fails_after_the_wait_without_sending_a_duplicate() -> None:
    payer, clock = Keypair(), FakeClock(start=0.0)
    rpc = ScriptedRpc([Hash.new_unique()])
    sender = _sender(rpc, clock, payer)
    tick = ix.tick(payer.pubkey(), Pubkey.new_unique(), Pubkey.new_unique())
    sender.send([tick])
    with pytest.raises(TransactionFailed, match=r"^the chain produced no new blockhash for 1 s"):
        sender.send([tick])
    assert len(rpc.sent) == 1
    assert clock.now == pytest.approx(1.0)


def test_a_failed_send_names_the_program_error() -> None:
    payer, clock = Keypair(), FakeClock(start=0.0)
    logs = [f"Program {COORDINATOR_PROGRAM_ID} failed: custom program error: 0x177f"]
    rpc = ScriptedRpc([Hash.new_unique()], fail_with=TransactionFailed("simulation failed", logs=logs))
    with pytest.raises(TransactionFailed) as caught:
        _sender(rpc, clock, payer).send([ix.tick(payer.pubkey(), Pubkey.new_unique(), Pubkey.new_unique())])
    assert caught.value.message == "simulation failed [CoordinatorErrorHalted]"
    assert caught.value.program_error == 6015
