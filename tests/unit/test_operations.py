"""The operations' instruction choices on a fake chain: which instruction, which accounts, when to refuse.

The reader is test_queries' FakeChain (accounts by address, encoded with our own encoders); the sender
records what would be sent. The same operations run end to end on the local chain in
tests/integration/test_commands_*.py.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from solders.hash import Hash
from solders.instruction import Instruction
from solders.keypair import Keypair
from solders.message import Message
from solders.pubkey import Pubkey
from solders.signature import Signature

from psyche.chain import instructions as ix
from psyche.chain import pda
from psyche.chain.accounts.coordinator import SIZE, CoordinatorAccount, RunState
from psyche.chain.accounts.token import Mint, TokenAccount
from psyche.chain.accounts.treasurer import TreasurerRun
from psyche.chain.programs import (
    COORDINATOR_PROGRAM_ID,
    DEFAULT_PROGRAM_IDS,
    PERMISSIONLESS_GRANTEE,
    TOKEN_PROGRAM_ID,
    TREASURER_PROGRAM_ID,
    ProgramIds,
)
from psyche.chain.transactions import PACKET_DATA_SIZE, SentTransaction, transaction_size
from psyche.errors import ConfigError, JoinRefused, NotAuthorized
from psyche.manager.operations import admin, authorization, participant, runs
from tests.support.fake_chain import COORD, MINT, OWNER, USER, FakeChain, seed_authorization, seed_run

RENT = 1_000_000


class FakeReader(FakeChain):
    """FakeChain plus the balance and rent reads the operations make."""

    def get_balance(self, pubkey: Pubkey) -> int:
        self.round_trips += 1
        info = self.accounts.get(pubkey)
        return 0 if info is None else info.lamports

    def get_minimum_balance_for_rent_exemption(self, size: int) -> int:
        self.round_trips += 1
        return RENT + size


class FakeSender:
    """Records each transaction instead of sending it; counts how often the wallet was needed."""

    def __init__(self, payer: Pubkey = OWNER) -> None:
        self._payer = payer
        self.payer_reads = 0
        self.sent: list[tuple[list[Instruction], list[Keypair]]] = []

    @property
    def payer(self) -> Pubkey:
        self.payer_reads += 1
        return self._payer

    def size(self, instructions: Sequence[Instruction], signers: Sequence[Keypair] = ()) -> int:
        # A legacy transaction: the signature count (one byte below 128), the signatures, the message.
        message = Message.new_with_blockhash(list(instructions), self._payer, Hash.default())
        return 1 + 64 * message.header.num_required_signatures + len(bytes(message))

    def send(
        self, instructions: Sequence[Instruction], *, signers: Sequence[Keypair] = ()
    ) -> SentTransaction:
        self.sent.append((list(instructions), list(signers)))
        return SentTransaction(Signature.new_unique(), 7, ["Program log: ok"], Hash.default())

    @property
    def instructions(self) -> list[list[Instruction]]:
        return [ixs for ixs, _ in self.sent]


@dataclass
class Access:
    """A ChainAccess of fakes."""

    reader: FakeReader = dataclasses.field(default_factory=FakeReader)
    sender: FakeSender = dataclasses.field(default_factory=FakeSender)
    programs: ProgramIds = DEFAULT_PROGRAM_IDS


def _instance(run_id: str = "test") -> Pubkey:
    return pda.coordinator_instance(run_id)


def _configured(chain: Access, run_id: str = "test", *, state: RunState = RunState.Paused) -> None:
    seed_run(chain.reader, run_id, state=state)
    info = chain.reader.accounts[COORD]
    account = CoordinatorAccount.decode(info.data)
    config = dataclasses.replace(account.config, epoch_time=600)
    chain.reader.put(COORD, dataclasses.replace(account, config=config).encode(), COORDINATOR_PROGRAM_ID)


def _treasurer(chain: Access, run_id: str = "test", *, vault: int = 0, decimals: int = 6) -> Pubkey:
    index = pda.treasurer_index(run_id)
    address, bump = pda.find_treasurer_run(index)
    run = TreasurerRun(bump, index, OWNER, OWNER, COORD, _instance(run_id), MINT, 0, 0)
    chain.reader.put(address, run.encode(), TREASURER_PROGRAM_ID)
    chain.reader.put(MINT, Mint(OWNER, 10**12, decimals).encode(), TOKEN_PROGRAM_ID)
    chain.reader.put(
        pda.associated_token_account(address, MINT),
        TokenAccount(MINT, address, vault).encode(),
        TOKEN_PROGRAM_ID,
    )
    return address


# --- create-run ----------------------------------------------------------------------------------------


def test_create_run_sends_the_account_and_init_signed_by_the_new_account() -> None:
    chain = Access()
    created = runs.create_run(chain, "fresh", "v1")
    [(sent, signers)] = chain.sender.sent
    [account] = signers
    assert created.coordinator_account == account.pubkey()
    assert created.join_authority == OWNER  # the wallet, by default
    assert created.locked_lamports == RENT + SIZE
    assert created.treasurer_run is None and created.treasurer_index is None
    assert sent == [
        ix.system_create_account(OWNER, account.pubkey(), RENT + SIZE, SIZE, COORDINATOR_PROGRAM_ID),
        ix.init_coordinator(
            OWNER,
            account.pubkey(),
            main_authority=OWNER,
            join_authority=OWNER,
            run_id="fresh",
            client_version="v1",
        ),
    ]


def test_create_run_with_a_mint_goes_through_the_treasurer_at_the_derived_index() -> None:
    chain = Access()
    join = Pubkey.new_unique()
    created = runs.create_run(chain, "paid", "v1", treasurer_collateral_mint=MINT, join_authority=join)
    [(sent, [account])] = chain.sender.sent
    index = pda.treasurer_index("paid")
    assert (created.treasurer_run, created.treasurer_index) == (pda.treasurer_run(index), index)
    assert sent[1] == ix.run_create(
        OWNER,
        account.pubkey(),
        MINT,
        index=index,
        run_id="paid",
        client_version="v1",
        main_authority=OWNER,
        join_authority=join,
    )


def test_create_run_refuses_a_taken_run_id_and_sends_nothing() -> None:
    chain = Access()
    seed_run(chain.reader, "taken")
    with pytest.raises(ConfigError, match=r"^run 'taken' already exists \(instance account "):
        runs.create_run(chain, "taken", "v1")
    assert chain.sender.sent == []


def test_create_run_checks_its_arguments_before_the_wallet_or_the_chain() -> None:
    chain = Access()
    with pytest.raises(ConfigError, match="--treasurer-index needs --treasurer-collateral-mint"):
        runs.create_run(chain, "r", "v1", treasurer_index=3)
    with pytest.raises(ConfigError, match="run_id must be 32 bytes or less"):
        runs.create_run(chain, "r" * 33, "v1")
    assert (chain.reader.round_trips, chain.sender.payer_reads) == (0, 0)


# --- set-paused and close-run ----------------------------------------------------------------------------


def test_pause_of_a_plain_run_is_the_coordinators_set_paused() -> None:
    chain = Access()
    _configured(chain, state=RunState.RoundTrain)
    outcome = runs.set_paused(chain, "test", paused=True)
    assert chain.sender.instructions == [[ix.set_paused(OWNER, _instance(), COORD, True)]]
    assert outcome.signature is not None and outcome.state_before == RunState.RoundTrain


def test_resume_of_a_treasurer_run_is_the_treasurers_run_update() -> None:
    chain = Access()
    _configured(chain)
    treasurer_run = _treasurer(chain)
    runs.set_paused(chain, "test", paused=False)
    assert chain.sender.instructions == [
        [ix.run_update(OWNER, treasurer_run, _instance(), COORD, paused=False)]
    ]


def test_pause_of_a_halted_run_sends_nothing() -> None:
    chain = Access()
    _configured(chain, state=RunState.Paused)
    outcome = runs.set_paused(chain, "test", paused=True)
    assert outcome.signature is None and chain.sender.sent == []
    assert chain.sender.payer_reads == 0  # nothing to sign: the wallet is never loaded


@pytest.mark.parametrize(
    ("state", "configured", "message"),
    [
        (RunState.Finished, True, "run 'test' is finished and cannot be resumed"),
        (RunState.Uninitialized, False, "run 'test' has no config yet: run update-config"),
    ],
)
def test_resume_refusals(state: RunState, configured: bool, message: str) -> None:
    chain = Access()
    if configured:
        _configured(chain, state=state)
    else:
        seed_run(chain.reader, state=state)
    with pytest.raises(ConfigError, match=message):
        runs.set_paused(chain, "test", paused=False)
    assert chain.sender.sent == []


def test_close_run_refuses_a_wallet_that_is_not_the_main_authority() -> None:
    chain = Access(sender=FakeSender(USER))
    seed_run(chain.reader)
    with pytest.raises(ConfigError, match=rf"^your wallet {USER} is not the main authority of run 'test'"):
        runs.close_run(chain, "test")
    assert chain.sender.sent == []


def test_close_run_recovers_both_accounts_rent() -> None:
    chain = Access()
    seed_run(chain.reader)
    closed = runs.close_run(chain, "test")
    lamports = chain.reader.accounts[_instance()].lamports + chain.reader.accounts[COORD].lamports
    assert closed.recovered_lamports == lamports
    assert chain.sender.instructions == [[ix.free_coordinator(OWNER, OWNER, _instance(), COORD)]]


# --- update-config ---------------------------------------------------------------------------------------


def test_update_config_of_a_plain_run_bumps_the_client_version_on_the_coordinator() -> None:
    chain = Access()
    _configured(chain)
    updated = runs.update_config(chain, "test", runs.ConfigUpdate(client_version="v2"))
    assert chain.sender.instructions == [[ix.update_client_version(OWNER, _instance(), COORD, "v2")]]
    assert (updated.previous_client_version, updated.plan.client_version) == ("v1", "v2")
    assert updated.treasurer_run is None and len(updated.signatures) == 1


def test_update_config_of_a_treasurer_run_goes_through_run_update() -> None:
    chain = Access()
    _configured(chain)
    treasurer_run = _treasurer(chain)
    updated = runs.update_config(chain, "test", runs.ConfigUpdate(name="a name"))
    [[instruction]] = chain.sender.instructions
    assert instruction.program_id == TREASURER_PROGRAM_ID
    assert updated.treasurer_run == treasurer_run


def test_update_config_with_nothing_to_change_bails_before_the_wallet(tmp_path: Path) -> None:
    chain = Access()
    _configured(chain)
    with pytest.raises(ConfigError, match="would not update anything"):
        runs.update_config(chain, "test", runs.ConfigUpdate(client_version="v1"))
    assert (chain.sender.sent, chain.sender.payer_reads) == ([], 0)


# --- admin -----------------------------------------------------------------------------------------------


def test_rates_on_a_plain_run_are_whole_points_on_the_coordinator() -> None:
    chain = Access()
    _configured(chain)
    rates = admin.set_future_epoch_rates(
        chain, "test", earning_rate_total_shared="12", slashing_rate_per_client=None
    )
    assert (rates.earning_rate_total_shared, rates.slashing_rate_per_client) == (12, None)
    assert chain.sender.instructions == [
        [ix.set_future_epoch_rates(OWNER, _instance(), COORD, earning_rate_total_shared=12)]
    ]
    with pytest.raises(ConfigError, match=r"has no treasurer, so rates are whole points, got '1\.5'"):
        admin.set_future_epoch_rates(
            chain, "test", earning_rate_total_shared="1.5", slashing_rate_per_client=None
        )


def test_rates_on_a_treasurer_run_are_token_amounts_through_run_update() -> None:
    chain = Access()
    _configured(chain)
    treasurer_run = _treasurer(chain, decimals=6)
    admin.set_future_epoch_rates(chain, "test", earning_rate_total_shared="1.5", slashing_rate_per_client="0")
    expected = ix.run_update(
        OWNER,
        treasurer_run,
        _instance(),
        COORD,
        epoch_earning_rate_total_shared=1_500_000,
        epoch_slashing_rate_per_client=0,
    )
    assert chain.sender.instructions == [[expected]]


def test_tick_refuses_a_halted_run_and_paces_the_rest() -> None:
    chain = Access()
    _configured(chain, state=RunState.Paused)
    with pytest.raises(ConfigError, match=r"is halted \(Paused\): a halted run does not tick"):
        admin.tick(chain, "test", count=1, interval_s=1, on_tick=lambda *_: None, sleep=lambda _: None)
    _configured(chain, state=RunState.RoundTrain)
    sleeps: list[float] = []
    seen: list[int] = []
    admin.tick(
        chain, "test", count=3, interval_s=0.25, on_tick=lambda n, _: seen.append(n), sleep=sleeps.append
    )
    assert seen == [1, 2, 3] and sleeps == [0.25, 0.25]  # the first tick at once
    assert chain.sender.instructions == [[ix.tick(OWNER, _instance(), COORD)]] * 3


def test_checkpoint_needs_an_epoch_client() -> None:
    chain = Access()
    seed_run(chain.reader, state=RunState.RoundTrain, epoch_clients=(USER,))
    with pytest.raises(ConfigError, match=rf"your wallet {OWNER} is not a client of run 'test'"):
        admin.announce_checkpoint(chain, "test", "org/model", None)
    assert chain.sender.sent == []
    admin.announce_checkpoint(Access(chain.reader, FakeSender(USER)), "test", "org/model", "abc")


def test_top_up_refuses_more_than_the_wallet_holds() -> None:
    chain = Access()
    seed_run(chain.reader)
    treasurer_run = _treasurer(chain, vault=5)
    source = pda.associated_token_account(OWNER, MINT)
    chain.reader.put(source, TokenAccount(MINT, OWNER, 1_000_000).encode(), TOKEN_PROGRAM_ID)
    with pytest.raises(ConfigError, match=r"holds 1\.000000 of mint .*, less than 2\.000000$"):
        admin.top_up_rewards(chain, "test", "2")
    top_up = admin.top_up_rewards(chain, "test", "0.5")
    vault = pda.associated_token_account(treasurer_run, MINT)
    assert chain.sender.instructions == [[ix.token_transfer(source, vault, OWNER, 500_000)]]
    assert (top_up.amount, top_up.treasury_balance) == (500_000, 500_005)


# --- participant -----------------------------------------------------------------------------------------


def test_claim_creates_what_is_missing_then_claims_what_the_treasury_can_pay() -> None:
    chain = Access(sender=FakeSender(USER))
    seed_run(chain.reader, ledger=((USER, 700),))
    treasurer_run = _treasurer(chain, vault=450)
    claim = participant.claim_rewards(chain, "test")
    user_ata = pda.associated_token_account(USER, MINT)
    vault = pda.associated_token_account(treasurer_run, MINT)
    assert chain.sender.instructions == [
        [
            ix.create_associated_token_account_idempotent(USER, USER, MINT),
            ix.participant_create(USER, USER, treasurer_run),
            ix.participant_claim(USER, user_ata, treasurer_run, vault, COORD, 450),
        ]
    ]
    assert claim.plan.amount == 450 and claim.signature is not None


def test_claim_with_nothing_claimable_sends_nothing() -> None:
    chain = Access(sender=FakeSender(USER))
    seed_run(chain.reader)
    _treasurer(chain, vault=450)
    claim = participant.claim_rewards(chain, "test")
    assert claim.signature is None and claim.plan.nothing and chain.sender.sent == []


def test_can_join_names_the_refusal_class() -> None:
    chain = Access()
    seed_run(chain.reader)
    refused = participant.can_join(chain, "test", USER, None)
    assert isinstance(refused.error(), NotAuthorized) and refused.chosen is None
    seed_authorization(chain.reader, PERMISSIONLESS_GRANTEE)
    allowed = participant.can_join(chain, "test", USER, None)
    assert allowed.error() is None and allowed.chosen is not None
    seed_run(chain.reader, state=RunState.RoundTrain, epoch_clients=(USER,))
    assert isinstance(participant.can_join(chain, "test", USER, None).error(), JoinRefused)


def test_list_runs_lists_joinable_runs_first_and_only_those_unless_asked() -> None:
    chain = Access()
    seed_run(chain.reader, "open")
    seed_run(chain.reader, "closed", coordinator=Pubkey.new_unique())
    seed_authorization(chain.reader, USER)
    warnings: list[str] = []

    def listing(every_run: bool) -> participant.RunListing:
        return participant.list_runs(
            chain,
            user=USER,
            extra_grantee=None,
            join_authority=None,
            every_run=every_run,
            warn=warnings.append,
        )

    # Both runs share a join authority (OWNER), so USER's authorization opens both.
    assert sorted(r.run_id for r in listing(False).listed) == ["closed", "open"]
    anyone = participant.list_runs(
        chain, user=None, extra_grantee=None, join_authority=None, every_run=True, warn=warnings.append
    )
    assert anyone.joinable == frozenset() and len(anyone.listed) == 2
    assert warnings == []


# --- join authorizations ---------------------------------------------------------------------------------


def test_authorization_create_creates_and_activates_only_what_is_missing() -> None:
    chain = Access()
    grantee = Pubkey.new_unique()
    address = pda.authorization(OWNER, grantee)
    with pytest.raises(AssertionError):  # the fake chain does not execute: the read-back finds nothing
        authorization.create_authorization(chain, grantee)
    assert chain.sender.instructions == [
        [
            ix.authorization_create(OWNER, OWNER, grantee),
            ix.authorization_grantor_update(OWNER, address, True),
        ]
    ]
    chain = Access()
    seed_authorization(chain.reader, grantee, active=False)
    state = authorization.create_authorization(chain, grantee)
    assert chain.sender.instructions == [[ix.authorization_grantor_update(OWNER, address, True)]]
    assert not state.created
    chain = Access()
    seed_authorization(chain.reader, grantee, active=True)
    assert authorization.create_authorization(chain, grantee).signature is None
    assert chain.sender.sent == []


def test_authorization_delete_of_an_inactive_one_sends_nothing() -> None:
    chain = Access()
    seed_authorization(chain.reader, USER, active=False)
    assert authorization.deactivate_authorization(chain, USER).signatures == []
    assert chain.sender.sent == []


def test_the_fake_senders_size_is_the_signed_transactions_size() -> None:
    payer, other = Keypair(), Keypair()
    instructions = [ix.system_create_account(payer.pubkey(), other.pubkey(), 1, 1, COORDINATOR_PROGRAM_ID)]
    assert FakeSender(payer.pubkey()).size(instructions) == transaction_size(instructions, payer, [other])


def test_delegates_beyond_one_transaction_go_in_more_and_only_the_first_clears() -> None:
    chain = Access(sender=FakeSender(USER))
    seed_authorization(chain.reader, USER)
    keys = [Pubkey.new_unique() for _ in range(40)]
    state = authorization.set_delegates(chain, OWNER, clear=True, added=keys)
    address = pda.authorization(OWNER, USER)
    batches = chain.sender.instructions
    assert len(batches) == len(state.signatures) == 2
    split = next(n for n in range(1, len(keys)) if batches[0] == [_delegates(address, True, keys[:n])])
    assert batches[1] == [_delegates(address, False, keys[split:])]
    assert (
        chain.sender.size(batches[0])
        <= PACKET_DATA_SIZE
        < chain.sender.size([_delegates(address, True, keys[: split + 1])])
    )
    with pytest.raises(ConfigError, match=r"^nothing to do"):
        authorization.set_delegates(chain, OWNER, clear=False, added=[])


def _delegates(address: Pubkey, clear: bool, keys: list[Pubkey]) -> Instruction:
    return ix.authorization_grantee_update(USER, USER, address, delegates_clear=clear, delegates_added=keys)
