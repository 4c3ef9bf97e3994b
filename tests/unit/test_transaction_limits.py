"""Every transaction the CLI and the client build, at its worst case, fits Solana's limits.

Size: the signed, serialized transaction is at most 1232 bytes. Compute: run on an in-process local chain
(which meters a documented flat cost per invocation, docs/localnet.md), it stays under its compute limit;
the transactions that can land on a fresh chain do land.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypedDict

import pytest
from solders.hash import Hash
from solders.instruction import Instruction
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.transaction import VersionedTransaction

from psyche.chain import instructions as ix
from psyche.chain import pda
from psyche.chain.accounts.coordinator import SIZE
from psyche.chain.accounts.model import Checkpoint
from psyche.chain.accounts.setup import CoordinatorProgress, RunMetadata
from psyche.chain.accounts.token import Mint
from psyche.chain.instructions.args import WitnessMetadata
from psyche.chain.instructions.coordinator import BLOOM_SIZE, MERKLE_ROOT_SIZE, WITNESS_PROOF_SIZE
from psyche.chain.programs import COORDINATOR_PROGRAM_ID, TOKEN_PROGRAM_ID
from psyche.chain.runconfig import load_run_config
from psyche.chain.transactions import PACKET_DATA_SIZE, build_transaction, pack, transaction_size
from psyche.errors import TransactionFailed
from psyche.localnet.budget import compute_budget
from psyche.localnet.chain import Chain
from psyche.localnet.ledger import rent_exempt_minimum
from psyche.localnet.records import Account
from psyche.manager.operations.plans import UpdatePlan
from tests.support.paths import PSYCHE_FIXTURES, worst_toml

RUN_ID = "r" * 32  # the longest run_id
VERSION = "v" * 96  # the longest client_version
METADATA = RunMetadata("n" * 64, "d" * 280, 2**64 - 1, 2**64 - 1)  # the longest name and description
PROGRESS = CoordinatorProgress(2**16 - 1, 2**32 - 1, 2**64 - 1)
COMPUTE_ERRORS = ("ProgramFailedToComplete", "ComputationalBudgetExceeded")


class Ledger:
    """An in-process chain with a funded owner; runs transactions and reports size, units and error."""

    def __init__(self) -> None:
        self.chain = Chain()
        self.owner = self.fund(Keypair())

    def fund(self, kp: Keypair) -> Keypair:
        self.chain.ledger.commit({kp.pubkey(): Account(10**12)}, None)
        return kp

    def run(
        self, instructions: list[Instruction], signers: Sequence[Keypair] = (), *, commit: bool = True
    ) -> Any:
        tx = build_transaction(instructions, self.owner, signers, self.chain.ledger.latest_blockhash)
        raw = bytes(tx)
        assert len(raw) <= PACKET_DATA_SIZE
        versioned = VersionedTransaction.from_bytes(raw)
        result = self.chain.executor.execute(versioned, raw, commit=commit)
        assert result.units <= compute_budget(versioned.message).unit_limit
        assert not any(kind in str(result.err) for kind in COMPUTE_ERRORS), result.logs
        return result

    def mint(self) -> Pubkey:
        key = Pubkey.new_unique()
        data = bytearray(Mint(self.owner.pubkey(), 0, 6).encode())
        self.chain.ledger.commit({key: Account(rent_exempt_minimum(82), data, TOKEN_PROGRAM_ID)}, None)
        return key


def _create_run(net: Ledger, *, treasurer: bool) -> tuple[Pubkey, Pubkey]:
    """create-run's one transaction at its worst case; returns (instance, coordinator account)."""
    account = Keypair()
    payer = net.owner.pubkey()
    create = ix.system_create_account(
        payer, account.pubkey(), rent_exempt_minimum(SIZE), SIZE, COORDINATOR_PROGRAM_ID
    )
    if treasurer:
        init = ix.run_create(
            payer,
            account.pubkey(),
            net.mint(),
            index=2**64 - 1,
            run_id=RUN_ID,
            client_version=VERSION,
            main_authority=payer,
            join_authority=Pubkey.new_unique(),
        )
    else:
        init = ix.init_coordinator(
            payer,
            account.pubkey(),
            main_authority=payer,
            join_authority=Pubkey.new_unique(),
            run_id=RUN_ID,
            client_version=VERSION,
        )
    result = net.run([create, init], [account])
    assert result.err is None, result.logs
    return pda.coordinator_instance(RUN_ID), account.pubkey()


@pytest.mark.parametrize("treasurer", [False, True], ids=["plain", "treasurer"])
def test_create_run_at_its_longest_fits_and_lands(treasurer: bool) -> None:
    _create_run(Ledger(), treasurer=treasurer)


REAL_CONFIGS = sorted(PSYCHE_FIXTURES.glob("*.toml"))


@pytest.fixture(params=[*REAL_CONFIGS, "worst"], ids=[*(p.stem for p in REAL_CONFIGS), "worst"])
def toml(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    return worst_toml(tmp_path) if request.param == "worst" else Path(request.param)


def test_the_worst_model_is_the_longest_borsh(tmp_path: Path) -> None:
    _, worst = load_run_config(worst_toml(tmp_path))
    assert len(worst.to_borsh()) == 482
    assert all(len(load_run_config(p)[1].to_borsh()) < 482 for p in REAL_CONFIGS)


def test_update_config_at_its_longest_on_a_plain_run_fits_and_lands(toml: Path) -> None:
    config, model = load_run_config(toml)
    net = Ledger()
    instance, account = _create_run(net, treasurer=False)
    me = net.owner.pubkey()
    update = ix.update(
        me, instance, account, metadata=METADATA, config=config, model=model, progress=PROGRESS
    )
    bump = ix.update_client_version(me, instance, account, "w" * 96)
    # what update-config sends: one transaction, or two
    batches = pack([update, bump], lambda ixs: transaction_size(ixs, net.owner))
    assert batches == ([[update], [bump]] if toml.stem == "worst" else [[update, bump]])
    for batch in batches:
        result = net.run(batch)
        assert result.err is None, result.logs


def test_update_config_at_its_longest_on_a_treasurer_run_is_split_and_each_part_lands(toml: Path) -> None:
    config, model = load_run_config(toml)
    net = Ledger()
    instance, account = _create_run(net, treasurer=True)
    me = net.owner.pubkey()
    run = pda.treasurer_run(2**64 - 1)
    plan = UpdatePlan(METADATA, config, model, PROGRESS, "w" * 96)

    def run_update(part: dict[str, Any]) -> Instruction:
        return ix.run_update(me, run, instance, account, **part)

    whole = run_update(dict(zip(plan.parts(), (METADATA, config, model, PROGRESS, "w" * 96), strict=True)))
    # One run_update with everything is over Solana's packet: refused before sending, never sent.
    with pytest.raises(TransactionFailed, match=r"^transaction too large: \d+ bytes, Solana's limit is 1232"):
        build_transaction([whole], net.owner, [], Hash.default())
    parts = plan.split(lambda part: transaction_size([run_update(part)], net.owner) <= PACKET_DATA_SIZE)
    # Real configs: setup, then client version; the worst model: metadata, then the rest.
    expected = [["metadata", "config", "model", "progress"], ["client_version"]]
    if toml.stem == "worst":
        expected = [["metadata"], ["config", "model", "progress", "client_version"]]
    assert [list(part) for part in parts] == expected
    for part in parts:
        result = net.run([run_update(part)])
        assert result.err is None, result.logs


class WitnessFields(TypedDict):
    """A witness's variable parts, as keyword arguments (typed, so mypy checks them against each builder)."""

    proof: bytes
    participant_bloom: bytes
    broadcast_bloom: bytes
    broadcast_merkle: bytes


def test_client_transactions_at_their_longest_fit() -> None:
    net = Ledger()
    instance, account = _create_run(net, treasurer=False)
    me = net.owner.pubkey()
    metadata = WitnessMetadata(
        step=2**32 - 1, evals=tuple((f"eval{i}", 1.0) for i in range(8)), prompt_results=tuple(range(16))
    )
    full = WitnessFields(
        proof=b"\xff" * WITNESS_PROOF_SIZE,
        participant_bloom=b"\xff" * BLOOM_SIZE,
        broadcast_bloom=b"\xff" * BLOOM_SIZE,
        broadcast_merkle=b"\xff" * MERKLE_ROOT_SIZE,
    )
    sent = [
        ix.witness(me, instance, account, **full, metadata=metadata),
        ix.warmup_witness(me, instance, account, **full),
        ix.join_run(me, Pubkey.new_unique(), instance, account, bytes(32)),
        ix.tick(me, instance, account),
        ix.checkpoint(me, instance, account, Checkpoint.hub("o" * 64, "p" * 64)),
    ]
    sizes = []
    for instruction in sent:
        # The run is not training: the program refuses them, after charging their cost, never for compute.
        net.run([instruction], commit=False)
        sizes.append(transaction_size([instruction], net.owner))
    assert max(sizes) == sizes[0] and sizes[0] <= PACKET_DATA_SIZE  # the witness is the largest


def test_delegates_beyond_one_transaction_are_split_by_join_authorization_delegate() -> None:
    payer = Keypair()
    auth = Pubkey.new_unique()

    def update(n: int) -> Instruction:
        keys = [Pubkey.new_unique() for _ in range(n)]
        return ix.authorization_grantee_update(payer.pubkey(), payer.pubkey(), auth, delegates_added=keys)

    fits = max(n for n in range(64) if transaction_size([update(n)], payer) <= PACKET_DATA_SIZE)
    assert 25 <= fits < 40  # so a longer list is sent in several transactions (docs/commands.md)
