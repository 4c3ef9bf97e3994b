"""Join authorization commands: create, read, delegate (add, clear) and delete (deactivate)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from psyche.errors import ConfigError
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
    sent_in,
)

if TYPE_CHECKING:
    from psyche.manager.operations.authorization import AuthorizationState

F = TypeVar("F", bound=Callable[..., Any])
PERMISSIONLESS = "11111111111111111111111111111111"


def _describe(state: AuthorizationState) -> tuple[list[tuple[str, object]], dict[str, object]]:
    from psyche.manager.operations.decisions import grantee_label

    address, auth, lamports = state.address, state.authorization, state.lamports

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
    from psyche.manager.operations.authorization import create_authorization

    state = create_authorization(Session(app), parse_pubkey(authorizer))
    signature = state.signature
    rows, data = _describe(state)
    data.update(signature=signature, created=state.created)
    head = (
        f"Authorization {'created and activated' if state.created else 'activated'} "
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
    from psyche.manager.operations.authorization import read_authorization

    state = read_authorization(Session(app), parse_pubkey(join_authority), parse_pubkey(authorizer))
    rows, data = _describe(state)
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
    from psyche.manager.operations.authorization import set_delegates

    if more_delegates and not delegates_added:
        raise ConfigError(f"unexpected argument {more_delegates[0]}: delegate keys follow --delegates-added")
    added = [parse_pubkey(k) for k in (*delegates_added, *more_delegates)]
    state = set_delegates(
        Session(app), parse_pubkey(join_authority), clear=bool(delegates_clear), added=added
    )
    rows, data = _describe(state)
    data["signature"] = state.signature
    data["signatures"] = state.signatures
    emit(app, as_json, data, [f"Delegates updated with {sent_in(state.signatures)}", *fields(rows)])


@chain_command("join-authorization-delete", wallet=True)
@_grantee_option(True, "Grantee whose authorization to deactivate.")
def join_authorization_delete(app: App, as_json: bool, authorizer: str) -> None:
    """Deactivate your authorization for a grantee (the account stays; create re-activates it)."""
    from psyche.manager.operations.authorization import deactivate_authorization

    state = deactivate_authorization(Session(app), parse_pubkey(authorizer))
    rows, data = _describe(state)
    data["signature"] = state.signature
    head = (
        f"Authorization deactivated with transaction: {state.signature}"
        if state.signature
        else "Authorization already inactive; nothing sent"
    )
    emit(app, as_json, data, [head, *fields(rows)])
