"""Every program-derived address the project uses, in one place.

Convention: ``find_<name>(...)`` returns ``(address, bump)``; ``<name>(...)`` returns just the address.
Program IDs are keyword arguments defaulting to the IDs in :mod:`psyche.chain.programs`.
"""

from __future__ import annotations

import hashlib
import struct

from solders.pubkey import Pubkey

from psyche.chain.programs import (
    ASSOCIATED_TOKEN_PROGRAM_ID,
    AUTHORIZER_PROGRAM_ID,
    COORDINATOR_PROGRAM_ID,
    JOIN_RUN_AUTHORIZATION_SCOPE,
    TOKEN_PROGRAM_ID,
    TREASURER_PROGRAM_ID,
)
from psyche.errors import ConfigError

MAX_RUN_ID_BYTES = 32
MAX_SEED_BYTES = 32

COORDINATOR_INSTANCE_SEED = b"coordinator"
AUTHORIZATION_SEED = b"Authorization"
TREASURER_RUN_SEED = b"Run"
PARTICIPANT_SEED = b"Participant"


def run_id_bytes(run_id: str) -> bytes:
    """The run_id as its PDA seed, refused (as the programs and the reference CLI do) beyond 32 bytes.

    Raises:
        ConfigError: ``run_id`` is over 32 bytes.
    """
    data = run_id.encode("utf-8")
    if len(data) > MAX_RUN_ID_BYTES:
        raise ConfigError(f"run_id must be 32 bytes or less, got {len(data)} bytes")
    return data


def find_coordinator_instance(
    run_id: str, *, program_id: Pubkey = COORDINATOR_PROGRAM_ID
) -> tuple[Pubkey, int]:
    """The run's ``CoordinatorInstance``: seeds ``["coordinator", run_id]``.

    Raises:
        ConfigError: ``run_id`` is over 32 bytes.
    """
    return Pubkey.find_program_address([COORDINATOR_INSTANCE_SEED, run_id_bytes(run_id)], program_id)


def coordinator_instance(run_id: str, *, program_id: Pubkey = COORDINATOR_PROGRAM_ID) -> Pubkey:
    """The address of :func:`find_coordinator_instance`.

    Raises:
        ConfigError: ``run_id`` is over 32 bytes.
    """
    return find_coordinator_instance(run_id, program_id=program_id)[0]


def find_authorization(
    grantor: Pubkey,
    grantee: Pubkey,
    scope: bytes = JOIN_RUN_AUTHORIZATION_SCOPE,
    *,
    program_id: Pubkey = AUTHORIZER_PROGRAM_ID,
) -> tuple[Pubkey, int]:
    """An ``Authorization``: seeds ``["Authorization", grantor, grantee, scope]`` (scope raw, no length)."""
    if len(scope) > MAX_SEED_BYTES:
        raise ValueError(
            f"authorization scope must be {MAX_SEED_BYTES} bytes or less, got {len(scope)} bytes"
        )
    return Pubkey.find_program_address(
        [AUTHORIZATION_SEED, bytes(grantor), bytes(grantee), scope], program_id
    )


def authorization(
    grantor: Pubkey,
    grantee: Pubkey,
    scope: bytes = JOIN_RUN_AUTHORIZATION_SCOPE,
    *,
    program_id: Pubkey = AUTHORIZER_PROGRAM_ID,
) -> Pubkey:
    """The address of :func:`find_authorization`."""
    return find_authorization(grantor, grantee, scope, program_id=program_id)[0]


def treasurer_index(run_id: str) -> int:
    """The run-manager's default treasurer index: the first 8 bytes of ``sha256(run_id)`` as a u64 LE."""
    digest = hashlib.sha256(run_id.encode("utf-8")).digest()
    return int(struct.unpack_from("<Q", digest)[0])


def _u64_le(value: int) -> bytes:
    if not 0 <= value < 2**64:
        raise ValueError(f"treasurer index must be a u64, got {value}")
    return struct.pack("<Q", value)


def find_treasurer_run(index: int, *, program_id: Pubkey = TREASURER_PROGRAM_ID) -> tuple[Pubkey, int]:
    """A treasurer ``Run``: seeds ``["Run", index u64 LE]``."""
    return Pubkey.find_program_address([TREASURER_RUN_SEED, _u64_le(index)], program_id)


def treasurer_run(index: int, *, program_id: Pubkey = TREASURER_PROGRAM_ID) -> Pubkey:
    """The address of :func:`find_treasurer_run`."""
    return find_treasurer_run(index, program_id=program_id)[0]


def find_participant(
    run: Pubkey, user: Pubkey, *, program_id: Pubkey = TREASURER_PROGRAM_ID
) -> tuple[Pubkey, int]:
    """A treasurer ``Participant``: seeds ``["Participant", run, user]``."""
    return Pubkey.find_program_address([PARTICIPANT_SEED, bytes(run), bytes(user)], program_id)


def participant(run: Pubkey, user: Pubkey, *, program_id: Pubkey = TREASURER_PROGRAM_ID) -> Pubkey:
    """The address of :func:`find_participant`."""
    return find_participant(run, user, program_id=program_id)[0]


def find_associated_token_account(
    owner: Pubkey,
    mint: Pubkey,
    *,
    token_program_id: Pubkey = TOKEN_PROGRAM_ID,
    program_id: Pubkey = ASSOCIATED_TOKEN_PROGRAM_ID,
) -> tuple[Pubkey, int]:
    """The associated token account of ``owner`` for ``mint``: seeds ``[owner, token_program, mint]``."""
    return Pubkey.find_program_address([bytes(owner), bytes(token_program_id), bytes(mint)], program_id)


def associated_token_account(
    owner: Pubkey,
    mint: Pubkey,
    *,
    token_program_id: Pubkey = TOKEN_PROGRAM_ID,
    program_id: Pubkey = ASSOCIATED_TOKEN_PROGRAM_ID,
) -> Pubkey:
    """The address of :func:`find_associated_token_account`."""
    return find_associated_token_account(
        owner, mint, token_program_id=token_program_id, program_id=program_id
    )[0]
