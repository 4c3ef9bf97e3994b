"""The coordinator program's custom error codes (6000 + i, spec 4.3); the exceptions live in psyche.errors.

``CoordinatorProgramError`` and ``CoordinatorPanic`` are re-exported here for the logic's modules and callers.
"""

from __future__ import annotations

from enum import IntEnum

from psyche.errors import CoordinatorPanic, CoordinatorProgramError

__all__ = ["CoordinatorErrorCode", "CoordinatorPanic", "CoordinatorProgramError", "fail"]


class CoordinatorErrorCode(IntEnum):
    """`ProgramError` of the coordinator program; the on-chain code is ``6000 + value``."""

    UpdateConfigFinished = 0
    UpdateConfigNotHalted = 1
    CoordinatorAccountIncorrectSize = 2
    ClientsFull = 3
    ConfigSanityCheckFailed = 4
    ModelSanityCheckFailed = 5
    ProgressSanityCheckFailed = 6
    SignerNotAClient = 7
    SignerMismatch = 8
    CloseCoordinatorNotHalted = 9
    CoordinatorErrorNoActiveRound = 10
    CoordinatorErrorInvalidWitness = 11
    CoordinatorErrorInvalidRunState = 12
    CoordinatorErrorDuplicateWitness = 13
    CoordinatorErrorInvalidHealthCheck = 14
    CoordinatorErrorHalted = 15
    CoordinatorErrorInvalidCheckpoint = 16
    CoordinatorErrorWitnessesFull = 17
    CoordinatorErrorCannotResume = 18
    CoordinatorErrorInvalidWithdraw = 19
    CoordinatorErrorInvalidCommitteeSelection = 20
    CoordinatorErrorInvalidCommitteeProof = 21
    MoreClientsThanBatches = 22
    RunIdInvalidLength = 23

    @property
    def code(self) -> int:
        """The numeric custom error code (Solana `InstructionError::Custom`)."""
        return 6000 + int(self)


def fail(error: CoordinatorErrorCode) -> CoordinatorProgramError:
    """Shorthand for ``raise fail(E.Halted)``."""
    return CoordinatorProgramError(error)
