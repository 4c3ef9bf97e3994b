"""Run-owner operations on a live run: future reward rates, a Hub checkpoint, ticks, treasury top-ups."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from solders.pubkey import Pubkey

from psyche.chain.transactions import SentTransaction
from psyche.errors import ConfigError
from psyche.manager.operations import ChainAccess


@dataclass(frozen=True, slots=True)
class RatesSet:
    """The rates set, in points (None: left unchanged), and the transaction."""

    run_id: str
    signature: str
    earning_rate_total_shared: int | None
    slashing_rate_per_client: int | None


def set_future_epoch_rates(
    chain: ChainAccess,
    run_id: str,
    *,
    earning_rate_total_shared: str | None,
    slashing_rate_per_client: str | None,
    treasurer_index: int | None = None,
) -> RatesSet:
    """Set the reward rates that apply from the next epoch's warmup.

    Rates are text as typed: a token UI amount for a treasurer-backed run (its mint's decimals), else whole
    points. A treasurer-backed run changes through the treasurer's run_update, any other through the
    coordinator's set_future_epoch_rates.

    Raises:
        ConfigError: neither rate given, a rate that is not an amount, or a fraction on a run without a
            treasurer.
        TransactionFailed: the transaction failed.
    """
    from psyche.chain import instructions as ix
    from psyche.chain.queries import fetch_run
    from psyche.manager.operations.amounts import to_base_units
    from psyche.manager.operations.runs import load_treasurer_view

    if earning_rate_total_shared is None and slashing_rate_per_client is None:
        raise ConfigError("give --earning-rate-total-shared and/or --slashing-rate-per-client")
    programs = chain.programs
    run = fetch_run(chain.reader, run_id, programs)
    view = load_treasurer_view(chain, run_id, treasurer_index)
    decimals = 0 if view is None else view.decimals

    def native(text: str | None, flag: str) -> int | None:
        if text is None:
            return None
        value = to_base_units(text, decimals, flag)
        if view is None and to_base_units(text, 6, flag) != value * 10**6:
            raise ConfigError(
                f"{flag}: run {run_id!r} has no treasurer, so rates are whole points, got {text!r}"
            )
        return value

    earning = native(earning_rate_total_shared, "--earning-rate-total-shared")
    slashing = native(slashing_rate_per_client, "--slashing-rate-per-client")
    payer = chain.sender.payer
    accounts = (run.instance_address, run.coordinator_address)
    if view is not None:
        instruction = ix.run_update(
            payer,
            view.address,
            *accounts,
            epoch_earning_rate_total_shared=earning,
            epoch_slashing_rate_per_client=slashing,
            program_id=programs.treasurer,
            coordinator_program_id=programs.coordinator,
        )
    else:
        instruction = ix.set_future_epoch_rates(
            payer,
            *accounts,
            earning_rate_total_shared=earning,
            slashing_rate_per_client=slashing,
            program_id=programs.coordinator,
        )
    sent = chain.sender.send([instruction])
    return RatesSet(run_id, str(sent.signature), earning, slashing)


def announce_checkpoint(chain: ChainAccess, run_id: str, repo: str, revision: str | None) -> str:
    """Announce a Hub checkpoint ``repo`` (at ``revision``) for the run; returns the signature.

    Raises:
        ConfigError: repo or revision over 64 bytes, or the wallet is not a client of the current epoch
            (only one may announce).
        TransactionFailed: the transaction failed.
    """
    from psyche.chain import instructions as ix
    from psyche.chain.accounts.model import Checkpoint
    from psyche.chain.queries import fetch_run

    for flag, value in (("--repo", repo), ("--revision", revision)):
        if value is not None and len(value.encode("utf-8")) > 64:
            raise ConfigError(f"{flag} must be 64 bytes or less, got {len(value.encode('utf-8'))} bytes")
    programs = chain.programs
    run = fetch_run(chain.reader, run_id, programs)
    payer = chain.sender.payer
    if all(c.signer != payer for c in run.coordinator.epoch_state.clients):
        raise ConfigError(
            f"your wallet {payer} is not a client of run {run_id!r}'s current epoch; "
            "only an epoch client may announce a checkpoint"
        )
    checkpoint = Checkpoint.hub(repo, revision)
    sent = chain.sender.send(
        [
            ix.checkpoint(
                payer,
                run.instance_address,
                run.coordinator_address,
                checkpoint,
                program_id=programs.coordinator,
            )
        ]
    )
    return str(sent.signature)


def tick(
    chain: ChainAccess,
    run_id: str,
    *,
    count: int | None,
    interval_s: float,
    on_tick: Callable[[int, SentTransaction], None],
    sleep: Callable[[float], None],
) -> None:
    """Send ``count`` ticks (None: until interrupted), the first at once, then one every ``interval_s``.

    ``on_tick(n, sent)`` sees each confirmed tick (1-based). The sender waits for a fresh blockhash between
    identical ticks.

    Raises:
        ConfigError: the run is halted (a halted run does not tick).
        TransactionFailed: a tick failed.
    """
    from psyche.chain import instructions as ix
    from psyche.chain.queries import fetch_run

    programs = chain.programs
    run = fetch_run(chain.reader, run_id, programs)
    if run.state.halted:
        raise ConfigError(f"run {run_id!r} is halted ({run.state.display}): a halted run does not tick")
    instruction = ix.tick(
        chain.sender.payer, run.instance_address, run.coordinator_address, program_id=programs.coordinator
    )
    sent_count = 0
    while count is None or sent_count < count:
        if sent_count:
            sleep(interval_s)
        sent = chain.sender.send([instruction])
        sent_count += 1
        on_tick(sent_count, sent)


@dataclass(frozen=True, slots=True)
class TopUp:
    """A treasury top-up: the base units moved, the mint's decimals, the vault and its balance after."""

    run_id: str
    signature: str
    amount: int
    decimals: int
    treasury: Pubkey
    treasury_balance: int


def top_up_rewards(
    chain: ChainAccess, run_id: str, collateral_amount: str, *, treasurer_index: int | None = None
) -> TopUp:
    """Move ``collateral_amount`` (UI units) from the wallet's token account into the run's treasury.

    Raises:
        ConfigError: the run has no treasurer, the amount is 0 base units or not an amount, or the wallet's
            token account holds less.
        TransactionFailed: the transfer failed.
    """
    from psyche.chain import instructions as ix
    from psyche.chain import pda
    from psyche.chain.accounts.token import TokenAccount
    from psyche.manager.operations.amounts import format_ui, to_base_units
    from psyche.manager.operations.runs import load_treasurer_view

    view = load_treasurer_view(chain, run_id, treasurer_index)
    if view is None:
        raise ConfigError(f"run {run_id!r} has no treasurer: only a treasurer-backed run holds rewards")
    amount = to_base_units(collateral_amount, view.decimals, "--collateral-amount")
    if amount == 0:
        raise ConfigError(
            f"--collateral-amount: {collateral_amount} is 0 base units (decimals {view.decimals})"
        )
    payer = chain.sender.payer
    mint = view.run.collateral_mint
    source = pda.associated_token_account(payer, mint)
    vault = pda.associated_token_account(view.address, mint)
    info = chain.reader.get_account_info(source)
    balance = 0 if info is None else TokenAccount.decode(info.data).amount
    if balance < amount:
        raise ConfigError(
            f"your token account {source} holds {format_ui(balance, view.decimals)} of mint {mint}, "
            f"less than {format_ui(amount, view.decimals)}"
        )
    sent = chain.sender.send([ix.token_transfer(source, vault, payer, amount)])
    return TopUp(run_id, str(sent.signature), amount, view.decimals, vault, view.vault_balance + amount)
