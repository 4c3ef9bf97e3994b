"""The Psyche coordinator program (spec 4.3): Anchor account checks and argument decoding around the logic."""

from __future__ import annotations

import struct

from solders.pubkey import Pubkey

from psyche.chain import logic as logic
from psyche.chain.accounts.authorization import Authorization
from psyche.chain.accounts.coordinator import CoordinatorAccount
from psyche.chain.accounts.instance import CoordinatorInstance
from psyche.chain.accounts.model import Checkpoint, CoordinatorConfig, CoordinatorProgress, Model, RunMetadata
from psyche.chain.accounts.state import Bloom, NodeIdentity, WitnessProof
from psyche.chain.anchor import instruction_discriminator
from psyche.chain.layout import Reader
from psyche.chain.programs import (
    AUTHORIZER_PROGRAM_ID,
    COORDINATOR_PROGRAM_ID,
    JOIN_RUN_AUTHORIZATION_SCOPE,
    SYSTEM_PROGRAM_ID,
)
from psyche.localnet.programs.anchor import (
    DISCRIMINATOR_ALREADY_SET,
    Accounts,
    Handler,
    decode_args,
    handler_for,
    program_error,
)
from psyche.localnet.programs.base import Context, InstructionError

SEED = b"coordinator"
RUN_ID_MAX = 32
WITNESS_METADATA_SIZE = 389
_INCORRECT_SIZE = 6002


def _node_identity(r: Reader) -> NodeIdentity:
    return NodeIdentity(r.pubkey(), r.pubkey())


def _instance_seeds(run_id: str) -> list[bytes]:
    return [SEED, run_id.encode()[:64]]


def _load_instance(acc: Accounts, name: str = "coordinator_instance") -> CoordinatorInstance:
    instance = acc.load(
        name, COORDINATOR_PROGRAM_ID, CoordinatorInstance.DISCRIMINATOR, CoordinatorInstance.decode
    )
    acc.seeds(name, _instance_seeds(instance.run_id), instance.bump)
    return instance


def _load_account(
    acc: Accounts, instance: CoordinatorInstance, name: str = "coordinator_account"
) -> CoordinatorAccount:
    """``AccountLoader<CoordinatorAccount>``: mut, matching the instance, version == 1 (else 2003)."""
    acc.load(name, COORDINATOR_PROGRAM_ID, CoordinatorAccount.DISCRIMINATOR, lambda data: None)
    acc.mut(name)
    acc.require(instance.coordinator_account == acc.key(name), name)
    data = acc[name].account.data
    acc.require(len(data) >= 16 and struct.unpack_from("<Q", data, 8)[0] == 1, name)
    if len(data) != CoordinatorAccount.SIZE:
        raise program_error(acc.ctx, _INCORRECT_SIZE, "CoordinatorAccountIncorrectSize")
    return CoordinatorAccount.decode(bytes(data))


def _run_accounts(
    ctx: Context, first: str, *, owner: bool
) -> tuple[Accounts, CoordinatorInstance, CoordinatorAccount]:
    """Owner- and Permissionless-CoordinatorAccounts: signer, instance (seeds), account (mut, matches)."""
    acc = Accounts(ctx, (first, "coordinator_instance", "coordinator_account"))
    acc.signer(first)
    instance = _load_instance(acc)
    account = _load_account(acc, instance)
    if owner:
        acc.require(instance.main_authority == acc.key(first), "coordinator_instance")
    return acc, instance, account


def _write(acc: Accounts, account: CoordinatorAccount, name: str = "coordinator_account") -> None:
    acc[name].account.data[:] = account.encode()


def _init(ctx: Context) -> None:
    main, join, run_id, client_version = decode_args(
        ctx, lambda r: (r.pubkey(), r.pubkey(), r.string(), r.string())
    )
    acc = Accounts(ctx, ("payer", "coordinator_instance", "coordinator_account", "system_program"))
    acc.signer("payer")
    acc.mut("payer")
    if len(run_id.encode()) > RUN_ID_MAX:
        raise program_error(ctx, 6023, "RunIdInvalidLength")
    bump = acc.init("coordinator_instance", "payer", _instance_seeds(run_id), CoordinatorInstance.SIZE)
    target = acc.mut("coordinator_account").account
    if target.owner != COORDINATOR_PROGRAM_ID:
        raise acc.fail(3007, "coordinator_account")
    acc.program("system_program", SYSTEM_PROGRAM_ID)
    if len(target.data) != CoordinatorAccount.SIZE:
        raise program_error(ctx, _INCORRECT_SIZE, "CoordinatorAccountIncorrectSize")
    if any(target.data[:8]):
        raise acc.fail(DISCRIMINATOR_ALREADY_SET, "coordinator_account")
    instance = CoordinatorInstance(bump, main, join, acc.key("coordinator_account"), run_id)
    acc["coordinator_instance"].account.data[:] = instance.encode()
    target.data[:] = logic.init(run_id, client_version).encode()


def _free(ctx: Context) -> None:
    acc = Accounts(ctx, ("authority", "spill", "coordinator_instance", "coordinator_account"))
    acc.signer("authority")
    acc.mut("spill")
    instance = _load_instance(acc)
    acc.mut("coordinator_instance")
    acc.require(instance.main_authority == acc.key("authority"), "coordinator_instance")
    acc.load("coordinator_account", COORDINATOR_PROGRAM_ID, CoordinatorAccount.DISCRIMINATOR, lambda d: None)
    acc.mut("coordinator_account")
    acc.require(instance.coordinator_account == acc.key("coordinator_account"), "coordinator_account")
    logic.check_free(CoordinatorAccount.decode(bytes(acc["coordinator_account"].account.data)))
    acc.close("coordinator_instance", "spill")
    acc.close("coordinator_account", "spill")


def _update(ctx: Context) -> None:
    args = decode_args(
        ctx,
        lambda r: (
            r.option(RunMetadata.from_borsh),
            r.option(CoordinatorConfig.from_borsh),
            r.option(Model.from_borsh),
            r.option(CoordinatorProgress.from_borsh),
        ),
    )
    acc, _, account = _run_accounts(ctx, "authority", owner=True)
    _write(acc, logic.update(account, *args))


def _update_client_version(ctx: Context) -> None:
    version = decode_args(ctx, Reader.string)
    acc, _, account = _run_accounts(ctx, "authority", owner=True)
    _write(acc, logic.update_client_version(account, version))


def _set_future_epoch_rates(ctx: Context) -> None:
    earning, slashing = decode_args(ctx, lambda r: (r.option(Reader.u64), r.option(Reader.u64)))
    acc, _, account = _run_accounts(ctx, "authority", owner=True)
    _write(acc, logic.set_future_epoch_rates(account, earning, slashing))


def _set_paused(ctx: Context) -> None:
    paused = decode_args(ctx, Reader.boolean)
    acc, _, account = _run_accounts(ctx, "authority", owner=True)
    _write(acc, logic.set_paused(account, paused, ctx.unix_timestamp, ctx.slot))


def _join_run(ctx: Context) -> None:
    client_id = decode_args(ctx, _node_identity)
    acc = Accounts(ctx, ("user", "authorization", "coordinator_instance", "coordinator_account"))
    user = acc.signer("user").key
    auth = acc.load("authorization", AUTHORIZER_PROGRAM_ID, Authorization.DISCRIMINATOR, Authorization.decode)
    instance = _load_instance(acc)
    account = _load_account(acc, instance)
    valid = auth.is_valid_for(instance.join_authority, user, JOIN_RUN_AUTHORIZATION_SCOPE)
    acc.require(valid, "authorization")
    _write(acc, logic.join_run(account, user, client_id, ctx.unix_timestamp, ctx.slot))


def _tick(ctx: Context) -> None:
    acc, _, account = _run_accounts(ctx, "user", owner=False)
    _write(acc, logic.tick(account, ctx.unix_timestamp, ctx.slot))


def _witness_args(r: Reader, *, metadata: bool) -> tuple[WitnessProof, Bloom, Bloom, bytes]:
    out = (WitnessProof.from_borsh(r), Bloom.from_borsh(r), Bloom.from_borsh(r), r.raw(32))
    if metadata:
        r.raw(WITNESS_METADATA_SIZE)  # ignored by the program, but it must be there
    return out


def _witness(ctx: Context) -> None:
    proof, pbloom, bbloom, merkle = decode_args(ctx, lambda r: _witness_args(r, metadata=True))
    acc, _, account = _run_accounts(ctx, "user", owner=False)
    user = acc.key("user")
    _write(acc, logic.witness(account, user, proof, pbloom, bbloom, merkle, ctx.unix_timestamp, ctx.slot))


def _warmup_witness(ctx: Context) -> None:
    proof, pbloom, bbloom, merkle = decode_args(ctx, lambda r: _witness_args(r, metadata=False))
    acc, _, account = _run_accounts(ctx, "user", owner=False)
    user = acc.key("user")
    _write(
        acc, logic.warmup_witness(account, user, proof, pbloom, bbloom, merkle, ctx.unix_timestamp, ctx.slot)
    )


def _health_check(ctx: Context) -> None:
    accused, committee, position, index = decode_args(
        ctx, lambda r: (_node_identity(r), r.u8(), r.u64(), r.u64())
    )
    acc, _, account = _run_accounts(ctx, "user", owner=False)
    user = acc.key("user")
    now, slot = ctx.unix_timestamp, ctx.slot
    _write(acc, logic.health_check(account, user, accused, committee, position, index, now, slot))


def _checkpoint(ctx: Context) -> None:
    repo = decode_args(ctx, Checkpoint.from_borsh)
    acc, _, account = _run_accounts(ctx, "user", owner=False)
    _write(acc, logic.checkpoint(account, acc.key("user"), repo, ctx.unix_timestamp, ctx.slot))


_HANDLERS: dict[bytes, tuple[str, Handler]] = {
    instruction_discriminator(name): (name.title().replace("_", ""), fn)
    for name, fn in (
        ("init_coordinator", _init),
        ("free_coordinator", _free),
        ("update", _update),
        ("update_client_version", _update_client_version),
        ("set_future_epoch_rates", _set_future_epoch_rates),
        ("join_run", _join_run),
        ("set_paused", _set_paused),
        ("tick", _tick),
        ("witness", _witness),
        ("warmup_witness", _warmup_witness),
        ("health_check", _health_check),
        ("checkpoint", _checkpoint),
    )
}


class CoordinatorProgram:
    """``4SHug…``: the run's state machine; the logic lives in :mod:`psyche.chain.logic`."""

    program_id: Pubkey = COORDINATOR_PROGRAM_ID
    native = False

    def process(self, ctx: Context) -> None:
        """Run the instruction named by the 8-byte Anchor discriminator; the shared coordinator logic's
        errors become the program's custom errors, its panics ProgramFailedToComplete."""
        fn = handler_for(ctx, _HANDLERS)
        try:
            fn(ctx)
        except logic.CoordinatorProgramError as exc:
            raise program_error(ctx, exc.code, exc.name) from exc
        except logic.CoordinatorPanic as exc:
            ctx.log(str(exc))
            raise InstructionError("ProgramFailedToComplete") from exc
