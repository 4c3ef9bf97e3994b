"""The coordinator program logic (spec onchain.md 4.3 and 5), one function per instruction: the public face.

The modules beside this one split it by concern (errors, work, machine, program, witnessing); callers use
the names exported here.

Every function takes a frozen ``CoordinatorAccount`` and returns the new one, or raises
``CoordinatorProgramError`` (custom code 6000 + i) / ``CoordinatorPanic`` (the program would abort without
a custom code). Nothing is changed on failure, like a failed transaction. ``now`` is the cluster's
``unix_timestamp`` and ``slot`` its slot (they seed new rounds); nonce bumps follow the program.
"""

from __future__ import annotations

from psyche.chain.logic.errors import CoordinatorErrorCode, CoordinatorPanic, CoordinatorProgramError
from psyche.chain.logic.program import (
    check_free,
    init,
    join_run,
    set_future_epoch_rates,
    set_paused,
    simulate_tick,
    tick,
    update,
    update_client_version,
)
from psyche.chain.logic.witnessing import (
    checkpoint,
    health_check,
    rewrite_checkpoint,
    trainer_health_score,
    warmup_witness,
    witness,
)

__all__ = [
    "CoordinatorErrorCode",
    "CoordinatorPanic",
    "CoordinatorProgramError",
    "check_free",
    "checkpoint",
    "health_check",
    "init",
    "join_run",
    "rewrite_checkpoint",
    "set_future_epoch_rates",
    "set_paused",
    "simulate_tick",
    "tick",
    "trainer_health_score",
    "update",
    "update_client_version",
    "warmup_witness",
    "witness",
]
