"""Join authorization commands: create, read, delegate (add, clear) and delete (deactivate)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from psyche.errors import AccountNotFound, ConfigError
from psyche.manager.app import App
from psyche.manager.cli import PubkeyType
from psyche.manager.commands.common import (
    Session,
    chain_command,
    emit,
    env_option,
    fields,
    parse_pubkey,
    pubkey_option,
)

if TYPE_CHECKING:
    from solders.pubkey import Pubkey

    from psyche.chain.accounts.authorization import Authorization

F = TypeVar("F", bound=Callable[..., Any])
PERMISSIONLESS = "11111111111111111111111111111111"


def _read(session: Session, address: Pubkey) -> tuple[Authorization, int] | None:
    from psyche.chain.accounts.authorization import Authorization

    info = session.rpc.get_account_info(address)
    if info is None or info.lamports == 0:
        return None
    return Authorization.decode(info.data), info.lamports


def _describe(
    address: Pubkey, auth: Authorization, lamports: int
) -> tuple[list[tuple[str, object]], dict[str, object]]:
    from psyche.manager.commands.decisions import grantee_label

    rows: list[tuple[str, object]] = [
        ("Grantor", auth.grantor),
        ("Grantee", grantee_label(auth.grantee)),
        ("Address", address),
        ("Lamports", lamports),
        ("Active", str(auth.active).lower()),
        ("Delegates", len(auth.delegates)),
    ]
    rows += [(f"  delegate {i + 1}", key) for i, key in enumerate(auth.delegates)]
    data: dict[str, object] = {
        "address": str(address),
        "grantor": str(auth.grantor),
        "grantee": str(auth.grantee),
        "scope": bytes(auth.scope).decode("utf-8", "replace"),
        "active": auth.active,
        "lamports": lamports,
        "delegates": [str(d) for d in auth.delegates],
        "grantor_update_unix_timestamp": auth.grantor_update_unix_timestamp,
    }
    return rows, data


def _grantee_option(required: bool, help_text: str, default: str | None = None) -> Callable[[F], F]:
    return pubkey_option("--authorizer", env="AUTHORIZER", required=required, default=default, help=help_text)


@chain_command("join-authorization-create", wallet=True)
@_grantee_option(True, "Grantee: the user's (master) key, or 11111111111111111111111111111111 for anyone.")
def join_authorization_create(app: App, as_json: bool, authorizer: str) -> None:
    """Authorize a key (or anyone) to join your runs: create the authorization if missing, then activate."""
    from psyche.chain import instructions as ix
    from psyche.chain import pda

    session = Session(app)
    program = session.programs.authorizer
    grantor = session.payer.pubkey()
    grantee = parse_pubkey(authorizer)
    address = pda.authorization(grantor, grantee, program_id=program)
    existing = _read(session, address)
    instructions = []
    if existing is None:
        instructions.append(ix.authorization_create(grantor, grantor, grantee, program_id=program))
    if existing is None or not existing[0].active:
        instructions.append(ix.authorization_grantor_update(grantor, address, True, program_id=program))
    signature = None
    if instructions:
        signature = str(session.send(instructions).signature)
    current = _read(session, address)
    assert current is not None
    rows, data = _describe(address, *current)
    data.update(signature=signature, created=existing is None)
    head = (
        f"Authorization {'created and activated' if existing is None else 'activated'} "
        f"with transaction: {signature}"
        if signature
        else "Authorization already exists and is active; nothing sent"
    )
    emit(app, as_json, data, [head, *fields(rows)])


@chain_command("join-authorization-read", wallet=False)
@pubkey_option(
    "--join-authority", env="JOIN_AUTHORITY", required=True, help="The grantor (the run's join authority)."
)
@_grantee_option(
    False, "Grantee. [default: 11111111111111111111111111111111, anyone]", default=PERMISSIONLESS
)
def join_authorization_read(app: App, as_json: bool, join_authority: str, authorizer: str) -> None:
    """Show an authorization: grantor, grantee, address, whether it is active, and its delegates."""
    from psyche.chain import pda

    session = Session(app)
    grantor, grantee = parse_pubkey(join_authority), parse_pubkey(authorizer)
    address = pda.authorization(grantor, grantee, program_id=session.programs.authorizer)
    found = _read(session, address)
    if found is None:
        raise AccountNotFound(
            f"no authorization from {grantor} for grantee {authorizer}; authorization", str(address)
        )
    rows, data = _describe(address, *found)
    emit(app, as_json, data, fields(rows))


@chain_command("join-authorization-delegate", wallet=True)
@pubkey_option(
    "--join-authority", env="JOIN_AUTHORITY", required=True, help="The grantor who authorized your key."
)
@env_option(
    "--delegates-clear",
    env="DELEGATES_CLEAR",
    is_flag=True,
    default=None,
    help="Remove every delegate first.",
)
@env_option(
    "--delegates-added",
    "--delegate-added",
    "delegates_added",
    env="DELEGATES_ADDED",
    type=PubkeyType(),
    multiple=True,
    help="Delegate key to add; repeat the flag, or list more keys after it.",
)
@click.argument("more_delegates", nargs=-1, type=PubkeyType(), metavar="[DELEGATE]...")
def join_authorization_delegate(
    app: App,
    as_json: bool,
    join_authority: str,
    delegates_clear: bool | None,
    delegates_added: tuple[str, ...],
    more_delegates: tuple[str, ...],
) -> None:
    """As the authorized (master) key, set the delegate keys that may join for you."""
    from solders.instruction import Instruction

    from psyche.chain import instructions as ix
    from psyche.chain import pda
    from psyche.chain.transactions import PACKET_DATA_SIZE, transaction_size

    added = [*delegates_added, *more_delegates]
    if more_delegates and not delegates_added:
        raise ConfigError(f"unexpected argument {more_delegates[0]}: delegate keys follow --delegates-added")
    if not delegates_clear and not added:
        raise ConfigError("nothing to do: pass --delegates-clear and/or --delegates-added <PUBKEY>...")
    session = Session(app)
    program = session.programs.authorizer
    grantee = session.payer.pubkey()
    grantor = parse_pubkey(join_authority)
    address = pda.authorization(grantor, grantee, program_id=program)
    if _read(session, address) is None:
        raise AccountNotFound(
            f"no authorization from {grantor} for your key {grantee} (ask the join authority to run "
            f"join-authorization-create --authorizer {grantee}); authorization",
            str(address),
        )

    def update(clear: bool, keys: list[Pubkey]) -> Instruction:
        return ix.authorization_grantee_update(
            grantee, grantee, address, delegates_clear=clear, delegates_added=keys, program_id=program
        )

    # About 30 keys fit Solana's 1232-byte transaction: more go in further transactions, each appending.
    batches: list[list[Pubkey]] = [[]]
    for key in (parse_pubkey(k) for k in added):
        clear = bool(delegates_clear) and len(batches) == 1
        if batches[-1] and transaction_size([update(clear, [*batches[-1], key])], session.payer) > (
            PACKET_DATA_SIZE
        ):
            batches.append([])
        batches[-1].append(key)
    signatures = [
        str(session.send([update(bool(delegates_clear) and i == 0, keys)]).signature)
        for i, keys in enumerate(batches)
    ]
    current = _read(session, address)
    assert current is not None
    rows, data = _describe(address, *current)
    data["signature"] = signatures[-1]
    data["signatures"] = signatures
    sent_in = (
        f"transaction: {signatures[0]}" if len(signatures) == 1 else f"transactions: {', '.join(signatures)}"
    )
    emit(app, as_json, data, [f"Delegates updated with {sent_in}", *fields(rows)])


@chain_command("join-authorization-delete", wallet=True)
@_grantee_option(True, "Grantee whose authorization to deactivate.")
def join_authorization_delete(app: App, as_json: bool, authorizer: str) -> None:
    """Deactivate your authorization for a grantee (the account stays; create re-activates it)."""
    from psyche.chain import instructions as ix
    from psyche.chain import pda

    session = Session(app)
    program = session.programs.authorizer
    grantor = session.payer.pubkey()
    address = pda.authorization(grantor, parse_pubkey(authorizer), program_id=program)
    found = _read(session, address)
    if found is None:
        raise AccountNotFound(
            f"no authorization from {grantor} for grantee {authorizer}; authorization", str(address)
        )
    signature = None
    if found[0].active:
        signature = str(
            session.send(
                [ix.authorization_grantor_update(grantor, address, False, program_id=program)]
            ).signature
        )
    current = _read(session, address)
    assert current is not None
    rows, data = _describe(address, *current)
    data["signature"] = signature
    head = (
        f"Authorization deactivated with transaction: {signature}"
        if signature
        else "Authorization already inactive; nothing sent"
    )
    emit(app, as_json, data, [head, *fields(rows)])
