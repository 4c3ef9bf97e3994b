"""Naming program failures from logs, and building signed transactions (pure parts of chain.transactions)."""

from __future__ import annotations

from solders.hash import Hash
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from psyche.chain import instructions as ix
from psyche.chain.program_errors import error_name, failing_program, name_failure
from psyche.chain.programs import AUTHORIZER_PROGRAM_ID, COORDINATOR_PROGRAM_ID, TREASURER_PROGRAM_ID
from psyche.chain.transactions import build_transaction
from psyche.errors import TransactionFailed


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
