"""Instruction builders for the authorizer program (join authorizations and their delegates)."""

from __future__ import annotations

from collections.abc import Sequence

from solders.instruction import Instruction
from solders.pubkey import Pubkey

from psyche.chain import pda
from psyche.chain.instructions._common import anchor_writer, build, discriminators, readonly, signer, writable
from psyche.chain.layout import Writer
from psyche.chain.programs import AUTHORIZER_PROGRAM_ID, JOIN_RUN_AUTHORIZATION_SCOPE, SYSTEM_PROGRAM_ID

DISCRIMINATORS = discriminators(
    (
        "authorization_create",
        "authorization_grantor_update",
        "authorization_grantee_update",
        "authorization_close",
    )
)


def authorization_create(
    payer: Pubkey,
    grantor: Pubkey,
    grantee: Pubkey,
    scope: bytes = JOIN_RUN_AUTHORIZATION_SCOPE,
    *,
    program_id: Pubkey = AUTHORIZER_PROGRAM_ID,
) -> Instruction:
    """Create the (inactive) authorization PDA of ``grantor`` for ``grantee`` in ``scope``."""
    address = pda.authorization(grantor, grantee, scope, program_id=program_id)
    data = (
        anchor_writer(DISCRIMINATORS["authorization_create"])
        .pubkey(grantee)
        .bytes_vec(bytes(scope))
        .getvalue()
    )
    return build(
        program_id,
        data,
        [signer(payer, writable=True), signer(grantor), writable(address), readonly(SYSTEM_PROGRAM_ID)],
    )


def authorization_grantor_update(
    grantor: Pubkey, authorization: Pubkey, active: bool, *, program_id: Pubkey = AUTHORIZER_PROGRAM_ID
) -> Instruction:
    """Activate or deactivate an authorization (only its grantor may)."""
    data = anchor_writer(DISCRIMINATORS["authorization_grantor_update"]).boolean(active).getvalue()
    return build(program_id, data, [signer(grantor), writable(authorization)])


def authorization_grantee_update(
    payer: Pubkey,
    grantee: Pubkey,
    authorization: Pubkey,
    *,
    delegates_clear: bool = False,
    delegates_added: Sequence[Pubkey] = (),
    program_id: Pubkey = AUTHORIZER_PROGRAM_ID,
) -> Instruction:
    """Clear and/or append the delegate keys that may act for ``grantee`` (the account is reallocated)."""
    data = (
        anchor_writer(DISCRIMINATORS["authorization_grantee_update"])
        .boolean(delegates_clear)
        .vec(delegates_added, Writer.pubkey)
        .getvalue()
    )
    return build(
        program_id,
        data,
        [signer(payer, writable=True), signer(grantee), writable(authorization), readonly(SYSTEM_PROGRAM_ID)],
    )


def authorization_close(
    grantor: Pubkey, spill: Pubkey, authorization: Pubkey, *, program_id: Pubkey = AUTHORIZER_PROGRAM_ID
) -> Instruction:
    """Close an inactive authorization, sending its lamports to ``spill``."""
    data = DISCRIMINATORS["authorization_close"]
    return build(
        program_id,
        data,
        [signer(grantor), writable(spill), writable(authorization), readonly(SYSTEM_PROGRAM_ID)],
    )
