"""Well-known program IDs: the Psyche programs' defaults (configurable elsewhere) and Solana's own."""

from __future__ import annotations

from dataclasses import dataclass

from solders.pubkey import Pubkey

COORDINATOR_PROGRAM_ID = Pubkey.from_string("4SHugWqSXwKE5fqDchkJcPEqnoZE22VYKtSTVm7axbT7")
AUTHORIZER_PROGRAM_ID = Pubkey.from_string("PsyAUmhpmiUouWsnJdNGFSX8vZ6rWjXjgDPHsgqPGyw")
TREASURER_PROGRAM_ID = Pubkey.from_string("EnU7DRx5az5YWxaxgqEGbXSYtudcfnjXewyBRRZCjJPw")

SYSTEM_PROGRAM_ID = Pubkey.from_string("11111111111111111111111111111111")
TOKEN_PROGRAM_ID = Pubkey.from_string("TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA")
ASSOCIATED_TOKEN_PROGRAM_ID = Pubkey.from_string("ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL")
SYSVAR_RENT_ID = Pubkey.from_string("SysvarRent111111111111111111111111111111111")
SYSVAR_CLOCK_ID = Pubkey.from_string("SysvarC1ock11111111111111111111111111111111")
NATIVE_MINT = Pubkey.from_string("So11111111111111111111111111111111111111112")

# The all-zero key: as an authorization grantee it means "anyone" (a permissionless run).
PERMISSIONLESS_GRANTEE = SYSTEM_PROGRAM_ID

JOIN_RUN_AUTHORIZATION_SCOPE = b"CoordinatorJoinRun"


@dataclass(frozen=True, slots=True)
class ProgramIds:
    """The three Psyche program IDs a deployment uses (defaults: the spec's IDs)."""

    coordinator: Pubkey = COORDINATOR_PROGRAM_ID
    authorizer: Pubkey = AUTHORIZER_PROGRAM_ID
    treasurer: Pubkey = TREASURER_PROGRAM_ID


DEFAULT_PROGRAM_IDS = ProgramIds()
