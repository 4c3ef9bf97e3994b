"""Pure mapping of Solana transaction errors (preflight RPC errors, status ``err``) to TransactionFailed."""

from __future__ import annotations

import re
from typing import Any

from psyche.errors import RpcResponseError, TransactionFailed

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
