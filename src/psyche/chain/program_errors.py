"""Everything about a failed transaction in one place: reading the node's error, naming the program error.

- reading: a sendTransaction JSON-RPC error (preflight) or a status ``err`` -> TransactionFailed with the
  custom code and the logs (``parse_transaction_error``, ``describe_tx_error``, ``program_error_of``);
- naming: custom codes -> names, Anchor framework codes and each Psyche program's 6000+i enum
  (``error_name``), and a failure's message extended with that name (``name_failure``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from solders.pubkey import Pubkey

from psyche.chain.logic.errors import CoordinatorErrorCode
from psyche.chain.programs import DEFAULT_PROGRAM_IDS, TOKEN_PROGRAM_ID, ProgramIds
from psyche.errors import RpcResponseError, TransactionFailed

_FAILED_LINE = re.compile(r"Program (?P<program>\w+) failed: custom program error: 0x(?P<code>[0-9a-fA-F]+)")

# Anchor logs "... Error Code: InvalidRunState. Error Number: 6003. Error Message: Invalid run state."
_ANCHOR_LOG = re.compile(
    r"Error Code: (?P<name>\w+)\. Error Number: (?P<number>\d+)\. Error Message: (?P<msg>.*)"
)


def program_error_of(err: Any) -> int | None:
    """The custom program error in a transaction error: ``{"InstructionError": [i, {"Custom": n}]}``."""
    if not isinstance(err, dict):
        return None
    instruction_error = err.get("InstructionError")
    if not (isinstance(instruction_error, list) and len(instruction_error) == 2):
        return None
    detail = instruction_error[1]
    custom = detail.get("Custom") if isinstance(detail, dict) else None
    return custom if isinstance(custom, int) and not isinstance(custom, bool) else None


def describe_tx_error(err: Any) -> str:
    """One line reading a transaction error JSON value (``"BlockhashNotFound"``, InstructionError ...)."""
    if isinstance(err, str):
        return err
    if (
        isinstance(err, dict)
        and isinstance(err.get("InstructionError"), list)
        and len(err["InstructionError"]) == 2
    ):
        index, detail = err["InstructionError"]
        custom = program_error_of(err)
        what = f"custom program error {custom} (0x{custom:x})" if custom is not None else str(detail)
        return f"instruction {index}: {what}"
    return str(err)


def anchor_error_of(logs: list[str]) -> str | None:
    """``"InvalidRunState (6003): Invalid run state."`` from the Anchor error line in program logs, if any."""
    for line in logs:
        match = _ANCHOR_LOG.search(line)
        if match:
            return f"{match['name']} ({match['number']}): {match['msg'].strip()}"
    return None


def parse_transaction_error(error: RpcResponseError, *, signature: str | None = None) -> TransactionFailed:
    """Turn a sendTransaction JSON-RPC error (preflight simulation data: err, logs) into TransactionFailed.

    ``program_error`` is the ``Custom`` number of an InstructionError, ``logs`` the simulation logs; the
    message is the node's, extended with the Anchor error name and text when the logs carry one.
    """
    data = error.data if isinstance(error.data, dict) else {}
    raw_logs = data.get("logs")
    logs = [line for line in raw_logs if isinstance(line, str)] if isinstance(raw_logs, list) else []
    message = error.rpc_message or f"RPC error {error.code}"
    anchor = anchor_error_of(logs)
    if anchor is not None:
        message = f"{message} [{anchor}]"
    return TransactionFailed(
        message, signature=signature, logs=logs, program_error=program_error_of(data.get("err"))
    )


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


def failing_program(logs: Sequence[str]) -> tuple[Pubkey, int] | None:
    """The program and custom code of the last ``Program X failed: custom program error: 0x..`` log line."""
    for line in reversed(logs):
        match = _FAILED_LINE.search(line)
        if match:
            try:
                return Pubkey.from_string(match["program"]), int(match["code"], 16)
            except ValueError:
                return None
    return None


def name_failure(error: TransactionFailed, programs: ProgramIds = DEFAULT_PROGRAM_IDS) -> TransactionFailed:
    """The same failure with the program error's name in its message (when the logs let us name it)."""
    found = failing_program(error.logs)
    code = error.program_error if error.program_error is not None else (found[1] if found else None)
    if code is None:
        return error
    name = error_name(found[0] if found else None, code, programs)
    if name is None or name in error.message:
        return error
    named = TransactionFailed(
        f"{error.message} [{name}]",
        signature=error.signature,
        logs=error.logs,
        program_error=code,
        hint=error.hint,
    )
    named.__cause__ = error
    return named
