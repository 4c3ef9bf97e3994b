"""The Psyche authorizer program (spec 3.2): create, grantor update, grantee update (delegates), close."""

from __future__ import annotations

import dataclasses

from psyche.chain.accounts.authorization import Authorization
from psyche.chain.anchor import instruction_discriminator
from psyche.chain.layout import Reader
from psyche.chain.programs import AUTHORIZER_PROGRAM_ID, SYSTEM_PROGRAM_ID
from psyche.localnet.programs.anchor import (
    Accounts,
    Handler,
    decode_args,
    handler_for,
    program_error,
)
from psyche.localnet.programs.base import Context

ACTIVE_IS_TRUE = 6000
CLOSING_CONDITIONS_NOT_REACHED = 6001
# Delegates are kept for 30 days after the grantor's last change before the account may be closed.
CLOSE_DELAY_SECONDS = 30 * 24 * 3600
SEED = b"Authorization"


def _load(acc: Accounts, name: str) -> Authorization:
    return acc.load(name, AUTHORIZER_PROGRAM_ID, Authorization.DISCRIMINATOR, Authorization.decode)


def _store(acc: Accounts, name: str, value: Authorization) -> None:
    data = value.encode()
    account = acc[name].account
    account.data[: len(data)] = data


def _create(ctx: Context) -> None:
    grantee, scope = decode_args(ctx, lambda r: (r.pubkey(), r.bytes_vec()))
    acc = Accounts(ctx, ("payer", "grantor", "authorization", "system_program"))
    acc.signer("payer")
    acc.mut("payer")
    acc.signer("grantor")
    acc.program("system_program", SYSTEM_PROGRAM_ID)
    seeds = [SEED, bytes(acc.key("grantor")), bytes(grantee), scope]
    bump = acc.init("authorization", "payer", seeds, Authorization.size_for(len(scope), 0))
    _store(acc, "authorization", Authorization(bump, acc.key("grantor"), grantee, scope, False, (), 0))


def _grantor_update(ctx: Context) -> None:
    active = decode_args(ctx, Reader.boolean)
    acc = Accounts(ctx, ("grantor", "authorization"))
    acc.signer("grantor")
    auth = _load(acc, "authorization")
    acc.mut("authorization")
    acc.require(auth.grantor == acc.key("grantor"), "authorization")
    _store(
        acc,
        "authorization",
        dataclasses.replace(auth, active=active, grantor_update_unix_timestamp=ctx.unix_timestamp),
    )


def _grantee_update(ctx: Context) -> None:
    clear, added = decode_args(ctx, lambda r: (r.boolean(), r.vec(Reader.pubkey, item_size=32)))
    acc = Accounts(ctx, ("payer", "grantee", "authorization", "system_program"))
    acc.signer("payer")
    acc.mut("payer")
    acc.signer("grantee")
    auth = _load(acc, "authorization")
    acc.program("system_program", SYSTEM_PROGRAM_ID)
    acc.mut("authorization")
    acc.require(auth.grantee == acc.key("grantee"), "authorization")
    delegates = (() if clear else auth.delegates) + tuple(added)
    acc.realloc("authorization", "payer", Authorization.size_for(len(auth.scope), len(delegates)))
    _store(acc, "authorization", dataclasses.replace(auth, delegates=delegates))


def _close(ctx: Context) -> None:
    decode_args(ctx, lambda r: None)
    acc = Accounts(ctx, ("grantor", "spill", "authorization", "system_program"))
    acc.signer("grantor")
    acc.mut("spill")
    auth = _load(acc, "authorization")
    acc.mut("authorization")
    acc.require(auth.grantor == acc.key("grantor"), "authorization")
    acc.program("system_program", SYSTEM_PROGRAM_ID)
    if auth.active:
        raise program_error(ctx, ACTIVE_IS_TRUE, "AuthorizationActiveIsTrue")
    if auth.delegates and ctx.unix_timestamp < auth.grantor_update_unix_timestamp + CLOSE_DELAY_SECONDS:
        raise program_error(
            ctx, CLOSING_CONDITIONS_NOT_REACHED, "AuthorizationClosingConditionsNotReachedYet"
        )
    acc.close("authorization", "spill")


_HANDLERS: dict[bytes, tuple[str, Handler]] = {
    instruction_discriminator(name): (label, fn)
    for name, label, fn in (
        ("authorization_create", "AuthorizationCreate", _create),
        ("authorization_grantor_update", "AuthorizationGrantorUpdate", _grantor_update),
        ("authorization_grantee_update", "AuthorizationGranteeUpdate", _grantee_update),
        ("authorization_close", "AuthorizationClose", _close),
    )
}


class AuthorizerProgram:
    """``PsyAU…``: who may join which run (grantor → grantee or anyone, plus the grantee's delegates)."""

    program_id = AUTHORIZER_PROGRAM_ID
    native = False

    def process(self, ctx: Context) -> None:
        """Run the instruction named by the 8-byte Anchor discriminator."""
        handler_for(ctx, _HANDLERS)(ctx)
