"""Names for custom program error codes: Anchor framework codes and each Psyche program's 6000+i enum."""

from __future__ import annotations

from solders.pubkey import Pubkey

from psyche.chain.logic.errors import CoordinatorErrorCode
from psyche.chain.programs import DEFAULT_PROGRAM_IDS, TOKEN_PROGRAM_ID, ProgramIds

ANCHOR_ERRORS: dict[int, str] = {
    100: "InstructionMissing",
    101: "InstructionFallbackNotFound",
    102: "InstructionDidNotDeserialize",
    103: "InstructionDidNotSerialize",
    2000: "ConstraintMut",
    2001: "ConstraintHasOne",
    2002: "ConstraintSigner",
    2003: "ConstraintRaw",
    2004: "ConstraintOwner",
    2005: "ConstraintRentExempt",
    2006: "ConstraintSeeds",
    2007: "ConstraintExecutable",
    2009: "ConstraintAssociated",
    2010: "ConstraintAssociatedInit",
    2011: "ConstraintClose",
    2012: "ConstraintAddress",
    2014: "ConstraintTokenMint",
    2015: "ConstraintTokenOwner",
    3000: "AccountDiscriminatorAlreadySet",
    3001: "AccountDiscriminatorNotFound",
    3002: "AccountDiscriminatorMismatch",
    3003: "AccountDidNotDeserialize",
    3004: "AccountDidNotSerialize",
    3005: "AccountNotEnoughKeys",
    3006: "AccountNotMutable",
    3007: "AccountOwnedByWrongProgram",
    3008: "InvalidProgramId",
    3009: "InvalidProgramExecutable",
    3010: "AccountNotSigner",
    3011: "AccountNotSystemOwned",
    3012: "AccountNotInitialized",
    3013: "AccountNotProgramData",
    3014: "AccountNotAssociatedTokenAccount",
    3015: "AccountSysvarMismatch",
    3016: "AccountReallocExceedsLimit",
    3017: "AccountDuplicateReallocs",
}

AUTHORIZER_ERRORS: dict[int, str] = {
    6000: "AuthorizationActiveIsTrue",
    6001: "AuthorizationClosingConditionsNotReachedYet",
}

TREASURER_ERRORS: dict[int, str] = {6000: "InvalidParameter", 6001: "RunIdInvalidLength"}

COORDINATOR_ERRORS: dict[int, str] = {e.code: e.name for e in CoordinatorErrorCode}

# SPL Token's own error enum (codes 0..), the ones a claim or top-up can meet.
TOKEN_ERRORS: dict[int, str] = {
    0: "NotRentExempt",
    1: "InsufficientFunds",
    2: "InvalidMint",
    3: "MintMismatch",
    4: "OwnerMismatch",
    17: "AccountFrozen",
}


def error_name(program: Pubkey | None, code: int, programs: ProgramIds = DEFAULT_PROGRAM_IDS) -> str | None:
    """The name of custom error ``code`` raised by ``program`` (None when unknown).

    Anchor framework codes (< 6000) are the same for every Anchor program; codes from 6000 depend on
    which program failed, so the failing program must be known to name them.
    """
    if code < 6000 and program != TOKEN_PROGRAM_ID:
        return ANCHOR_ERRORS.get(code)
    tables = {
        programs.coordinator: COORDINATOR_ERRORS,
        programs.authorizer: AUTHORIZER_ERRORS,
        programs.treasurer: TREASURER_ERRORS,
        TOKEN_PROGRAM_ID: TOKEN_ERRORS,
    }
    table = tables.get(program) if program is not None else None
    return None if table is None else table.get(code)
