"""The programs the local chain executes: Solana's System, SPL Token and ATA, and Psyche's three."""

from __future__ import annotations

from psyche.localnet.programs.base import Program


def default_programs() -> list[Program]:
    """Every program the chain registers at genesis, with its default id."""
    from psyche.localnet.budget import ComputeBudgetProgram
    from psyche.localnet.programs.associated_token import AssociatedTokenProgram
    from psyche.localnet.programs.authorizer import AuthorizerProgram
    from psyche.localnet.programs.coordinator import CoordinatorProgram
    from psyche.localnet.programs.spl_token import TokenProgram
    from psyche.localnet.programs.system import SystemProgram
    from psyche.localnet.programs.treasurer import TreasurerProgram

    programs: list[Program] = [
        SystemProgram(),
        ComputeBudgetProgram(),
        TokenProgram(),
        AssociatedTokenProgram(),
        AuthorizerProgram(),
        CoordinatorProgram(),
        TreasurerProgram(),
    ]
    return programs
