"""The localnet executor's runtime rules, with small misbehaving programs registered next to the real ones."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from solders.hash import Hash
from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair
from solders.message import Message
from solders.pubkey import Pubkey
from solders.system_program import TransferParams, transfer
from solders.transaction import VersionedTransaction

from psyche.localnet.chain import Chain
from psyche.localnet.ledger import FAUCET, LAMPORTS_PER_SIGNATURE, rent_exempt_minimum
from psyche.localnet.programs.base import Context
from psyche.localnet.records import Account

ROGUE_ID = Pubkey.from_string("Rogue11111111111111111111111111111111111111")


class Rogue:
    """A program whose behaviour the test supplies."""

    program_id = ROGUE_ID
    native = False

    def __init__(self, body: Callable[[Context], None]) -> None:
        self.body = body

    def process(self, ctx: Context) -> None:
        self.body(ctx)


def _chain(body: Callable[[Context], None]) -> Chain:
    chain = Chain()
    chain.registry.add(Rogue(body))
    chain.ledger.commit({ROGUE_ID: Account(1, bytearray(b"rogue"), FAUCET.pubkey(), True)}, None)
    return chain


def _execute(chain: Chain, ixs: list[Instruction], payer: Keypair, *extra: Keypair) -> Any:
    message = Message.new_with_blockhash(ixs, payer.pubkey(), chain.ledger.latest_blockhash)
    tx = VersionedTransaction(message, [payer, *extra])
    return chain.executor.execute(tx, bytes(tx), commit=True)


def _funded(chain: Chain, lamports: int = 10**9) -> Keypair:
    kp = Keypair()
    chain.ledger.commit({kp.pubkey(): Account(lamports)}, None)
    return kp


@pytest.mark.parametrize(
    ("body", "writable", "expected"),
    [
        (lambda ctx: ctx.accounts[0].account.data.extend(b"x"), True, "ExternalAccountDataModified"),
        (lambda ctx: setattr(ctx.accounts[0].account, "lamports", 0), True, "ExternalAccountLamportSpend"),
        (lambda ctx: setattr(ctx.accounts[0].account, "owner", ROGUE_ID), True, "ModifiedProgramId"),
        (lambda ctx: ctx.accounts[0].account.data.extend(b"x"), False, "ReadonlyDataModified"),
    ],
)
def test_post_instruction_rules_reject_illegal_changes(
    body: Callable[[Context], None], writable: bool, expected: str
) -> None:
    chain = _chain(body)
    payer, victim = _funded(chain), _funded(chain)
    ix = Instruction(ROGUE_ID, b"", [AccountMeta(victim.pubkey(), False, writable)])
    result = _execute(chain, [ix], payer)
    assert result.err == {"InstructionError": [0, expected]}
    assert chain.ledger.get(victim.pubkey()) == Account(10**9)
    assert chain.ledger.get(payer.pubkey()) == Account(10**9 - LAMPORTS_PER_SIGNATURE)
    assert result.logs[-1].startswith(f"Program {ROGUE_ID} failed: ")


def test_owned_account_changes_and_unbalanced_lamports() -> None:
    def mint_lamports(ctx: Context) -> None:
        ctx.accounts[0].account.lamports += 1

    chain = _chain(mint_lamports)
    payer = _funded(chain)
    owned = Pubkey.new_unique()
    chain.ledger.commit({owned: Account(rent_exempt_minimum(4), bytearray(4), ROGUE_ID)}, None)
    result = _execute(chain, [Instruction(ROGUE_ID, b"", [AccountMeta(owned, False, True)])], payer)
    assert result.err == {"InstructionError": [0, "UnbalancedInstruction"]}


def test_cpi_cannot_escalate_signer_or_writable_but_pda_seeds_sign() -> None:
    pda, bump = Pubkey.find_program_address([b"vault"], ROGUE_ID)
    dest = Pubkey.new_unique()

    def pay_from(ctx: Context) -> None:
        source = ctx.accounts[0].key
        seeds = [[b"vault", bytes([bump])]] if ctx.data == b"pda" else []
        ix = transfer(TransferParams(from_pubkey=source, to_pubkey=dest, lamports=rent_exempt_minimum(0)))
        ctx.invoke(ix, seeds)

    chain = _chain(pay_from)
    payer, victim = _funded(chain), _funded(chain)
    system = Pubkey.default()
    chain.ledger.commit({pda: Account(10**9)}, None)
    metas = [
        AccountMeta(victim.pubkey(), False, True),
        AccountMeta(dest, False, True),
        AccountMeta(system, False, False),
    ]
    stolen = _execute(chain, [Instruction(ROGUE_ID, b"", metas)], payer)
    assert stolen.err == {"InstructionError": [0, "PrivilegeEscalation"]}
    assert chain.ledger.get(dest) is None
    metas[0] = AccountMeta(pda, False, True)
    paid = _execute(chain, [Instruction(ROGUE_ID, b"pda", metas)], payer)
    assert paid.err is None
    assert f"Program {system} invoke [2]" in paid.logs
    assert chain.ledger.get(dest) == Account(rent_exempt_minimum(0))
    readonly = [
        AccountMeta(pda, False, False),
        AccountMeta(dest, False, True),
        AccountMeta(system, False, False),
    ]
    demoted = _execute(chain, [Instruction(ROGUE_ID, b"pda", readonly)], payer)
    assert demoted.err == {"InstructionError": [0, "PrivilegeEscalation"]}


def test_fee_payer_and_program_checks_land_nothing() -> None:
    chain = Chain()
    broke = Keypair()
    ix = transfer(TransferParams(from_pubkey=broke.pubkey(), to_pubkey=Pubkey.new_unique(), lamports=1))
    result = _execute(chain, [ix], broke)
    assert result.err == "AccountNotFound" and result.record is None
    payer = _funded(chain)
    missing = _execute(chain, [Instruction(Pubkey.new_unique(), b"", [])], payer)
    assert missing.err == "ProgramAccountNotFound" and missing.record is None
    assert chain.ledger.get(payer.pubkey()) == Account(10**9)


def _budget_message(ixs: list[Instruction]) -> Message:
    return Message.new_with_blockhash(ixs, Keypair().pubkey(), Hash.default())


def test_compute_budget_defaults_caps_and_refusals() -> None:
    from solders.compute_budget import set_compute_unit_limit, set_compute_unit_price

    from psyche.localnet.budget import BudgetError, ComputeBudget, compute_budget

    payer = Keypair()
    pay = transfer(TransferParams(from_pubkey=payer.pubkey(), to_pubkey=Pubkey.new_unique(), lamports=1))
    assert compute_budget(_budget_message([pay])) == ComputeBudget(200_000)
    assert compute_budget(_budget_message([pay] * 9)) == ComputeBudget(1_400_000)  # 9 x 200k, capped
    # ComputeBudget instructions do not count towards the default; an explicit limit is capped too.
    assert compute_budget(_budget_message([set_compute_unit_price(1), pay])) == ComputeBudget(200_000, 1)
    assert compute_budget(_budget_message([set_compute_unit_limit(5_000_000), pay])).unit_limit == 1_400_000
    assert ComputeBudget(1_000, 1_500).prioritization_fee == 2  # 1.5 lamports, rounded up
    bad = Instruction(set_compute_unit_limit(1).program_id, b"\x02\x01", [])
    with pytest.raises(BudgetError) as raised:
        compute_budget(_budget_message([pay, bad]))
    assert raised.value.err == {"InstructionError": [1, "InvalidInstructionData"]}
