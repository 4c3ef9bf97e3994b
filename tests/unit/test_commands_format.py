"""Pure formatting of the chain commands: durations, the reference's run table, amounts, explorer logs."""

from __future__ import annotations

import pytest
from solders.pubkey import Pubkey

from psyche.chain.accounts.coordinator import RunState
from psyche.errors import ConfigError
from psyche.manager.commands.format import (
    RUN_TABLE_HEADER,
    clients_cell,
    explorer_logs,
    format_duration,
    format_sol,
    format_table,
    node_id8,
    run_table_row,
    time_left_cell,
)
from psyche.manager.operations.amounts import format_ui, to_base_units, ui_amount
from psyche.manager.operations.decisions import joinable_first


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (59, "59s"), (60, "1m"), (3600, "1h"), (3723, "1h 2m 3s"), (7205, "2h 5s"), (-4, "0s")],
)
def test_duration_omits_zero_parts(seconds: int, text: str) -> None:
    assert format_duration(seconds) == text


def test_clients_cell() -> None:
    assert clients_cell(RunState.Paused, 3, 2) == "-"
    assert clients_cell(RunState.Uninitialized, 0, 0) == "-"
    assert clients_cell(RunState.Finished, 3, 2) == "-"
    assert clients_cell(RunState.WaitingForMembers, 1, 2) == "1/2 waiting"
    assert clients_cell(RunState.RoundTrain, 2, 2) == "2 training"


def test_time_left_cell() -> None:
    assert time_left_cell(RunState.WaitingForMembers, 100, 60, 120) == "-"
    assert time_left_cell(RunState.RoundTrain, 0, 60, 120) == "-"
    assert time_left_cell(RunState.RoundTrain, 100, 3600, 161) == "58m 59s"
    assert time_left_cell(RunState.Cooldown, 100, 60, 160) == "overrun"
    assert time_left_cell(RunState.Warmup, 100, 60, 110) == "50s"


def test_table_matches_the_reference_layout() -> None:
    rows = [
        run_table_row("alpha", RunState.WaitingForMembers, 1, 2, 3600, 0, 0),
        run_table_row("b", RunState.RoundTrain, 4, 2, 90, 1000, 1030),
    ]
    assert format_table(RUN_TABLE_HEADER, rows) == [
        "  run-id   state                 clients       epoch time   time left",
        "  alpha    Waiting for members   1/2 waiting   1h           -",
        "  b        Training              4 training    1m 30s       1m",
    ]


def test_joinable_first_keeps_rpc_order_within_groups() -> None:
    items = [
        (RunState.RoundTrain, True),
        (RunState.Paused, False),
        (RunState.WaitingForMembers, True),
        (RunState.Warmup, True),
        (RunState.WaitingForMembers, False),
    ]
    assert joinable_first(items) == [2, 0, 3, 1, 4]


def test_amounts() -> None:
    assert format_sol(829_935_360) == "0.829935360"
    assert format_sol(12_000_000_001) == "12.000000001"
    assert ui_amount(1_500_000, 6) == 1.5
    assert format_ui(1_500_000, 6) == "1.500000"
    assert format_ui(0, 0) == "0"
    assert to_base_units("1.5", 6, "--x") == 1_500_000
    assert to_base_units("0.1", 9, "--x") == 100_000_000  # exact, no float drift
    assert to_base_units("2.0000005", 6, "--x") == 2_000_000  # half to even
    with pytest.raises(ConfigError, match=r"^--collateral-amount: not a number: 'ten'$"):
        to_base_units("ten", 6, "--collateral-amount")
    with pytest.raises(ConfigError, match="must be a finite amount of zero or more"):
        to_base_units("-1", 6, "--x")
    with pytest.raises(ConfigError, match="too large for a u64"):
        to_base_units("1e30", 6, "--x")


def test_node_id8_is_hex_of_the_first_four_bytes() -> None:
    key = Pubkey(bytes([0xAB, 0x01, 0x00, 0xFF]) + bytes(28))
    assert node_id8(key) == "ab0100ff"


def test_explorer_logs_name_programs_and_errors() -> None:
    logs = [
        "Program 4SHug invoke [1]",
        "Program log: Instruction: FreeCoordinator",
        "Program 11111 invoke [2]",
        "Program 11111 success",
        "Program 4SHug consumed 5000 of 200000 compute units",
        "Program 4SHug failed: custom program error: 0x1779",
    ]
    names = {"4SHug": "Psyche Coordinator", "11111": "System Program"}
    out = explorer_logs(
        logs,
        lambda p: names[p],
        lambda p, c: "CloseCoordinatorNotHalted" if (p, c) == ("4SHug", 6009) else None,
    )
    assert out == [
        "#1 Psyche Coordinator Instruction",
        '> Program logged: "Instruction: FreeCoordinator"',
        "  > Invoking System Program",
        "  > Program returned success",
        "> Program consumed: 5000 of 200000 compute units",
        '> Program returned error: "custom program error: 0x1779" (CloseCoordinatorNotHalted)',
    ]
