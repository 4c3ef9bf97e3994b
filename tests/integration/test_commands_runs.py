"""Run-owner commands end to end against `run-manager localnet`, through the real click CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from solders.keypair import Keypair

from tests.support.commands import (
    Cli,
    Localnet,
    error_line,
    run_toml,
    with_world,
    write_keypair,
)

pytestmark = pytest.mark.slow

# The fixtures cli, endpoints and net come from tests/support/commands.py through the conftest: every
# test runs on RPC and again through a dead RPC + RPC_2.


@pytest.fixture
def owner(net: Localnet, tmp_path: Path) -> Path:
    key = Keypair()
    net.airdrop(key)
    return write_keypair(tmp_path, "owner", key)


def test_run_lifecycle_create_configure_pause_resume_bump_close(
    cli: Cli, owner: Path, tmp_path: Path, net: Localnet
) -> None:
    w = ("-w", owner)
    created = cli.json("create-run", "-r", "life", "-c", "v1.0.0", *w)
    assert created["run_id"] == "life" and created["treasurer_run"] is None
    dump = cli.json("json-dump-run", "-r", "life")
    assert dump["coordinator_account"]["status"]["state"] == "Uninitialized"
    assert dump["coordinator_account"]["setup"]["client_version"] == "v1.0.0"
    assert dump["coordinator_instance"]["address"] == created["instance"]
    assert dump["treasurer_run"] is None

    # Pausing a run that never started is a no-op, not the reference's Halted failure.
    paused = cli.ok("set-paused", "-r", "life", *w)
    assert "already halted (never started); nothing to pause" in paused.stdout
    no_config = cli.fails("set-paused", "-r", "life", "--resume", *w)
    assert error_line(no_config) == (
        "Error: run 'life' has no config yet: run update-config --config-path <run.toml> before resuming"
    )
    cli.ok("update-config", "-r", "life", "--config-path", run_toml(tmp_path), "--name", "Life", *w)
    resumed = cli.json("set-paused", "-r", "life", "--resume", *w)
    assert resumed["state"] == "Waiting for members"
    running = cli.ok("set-paused", "-r", "life", "--resume", *w)
    ticks = cli.ok("tick", "-r", "life", "--count", "2", "--ms-interval", "0", *w)
    assert "Tick 1: " in ticks.stdout and "Tick 2: " in ticks.stdout
    assert "#1 Psyche Coordinator Instruction" in ticks.stdout
    tick_args = ("tick", "-r", "life", "--count", "2", "--ms-interval", "0", "--json", *w)
    lines = cli.ok(*tick_args).stdout.splitlines()
    assert [json.loads(line)["tick"] for line in lines] == [1, 2]
    assert "already running (Waiting for members); nothing to resume" in running.stdout

    # Closing a running run: the program refuses; signature, explorer logs and the error's name are shown.
    refused = cli.fails("close-run", "-r", "life", *w)
    assert "[CloseCoordinatorNotHalted" in error_line(refused)
    assert "Signature: " in refused.stderr and "===== Logs =====" in refused.stderr
    assert "#1 Psyche Coordinator Instruction" in refused.stderr
    assert "hint: only a halted run can be closed" in refused.stderr

    # The version bump users restart on: only while halted.
    not_halted = cli.fails("update-config", "-r", "life", "--client-version", "v1.0.1", *w)
    assert "[UpdateConfigNotHalted" in error_line(not_halted)
    pause = cli.json("set-paused", "-r", "life", *w)
    assert pause["state"] == "Paused"
    bumped = cli.json("update-config", "-r", "life", "--client-version", "v1.0.1", *w)
    assert bumped["changed"] == ["client_version"]
    assert (
        cli.json("json-dump-run", "-r", "life")["coordinator_account"]["setup"]["client_version"] == "v1.0.1"
    )
    same = cli.fails("update-config", "-r", "life", "--client-version", "v1.0.1", *w)
    assert error_line(same) == "Error: this invocation would not update anything, bailing."

    closed = cli.ok("close-run", "-r", "life", *w)
    assert closed.stdout.startswith("Closed run life with transaction: ")
    assert "Recovered 0.8" in closed.stdout and "===== Logs =====" in closed.stdout
    gone = cli.fails("json-dump-run", "-r", "life")
    assert error_line(gone).startswith("Error: RPC error: failed to get account ")
    assert "(run 'life', endpoint http://127.0.0.1:" in error_line(gone)


def test_create_run_errors(cli: Cli, owner: Path) -> None:
    long_id = cli.fails("create-run", "-r", "x" * 33, "-c", "v1", "-w", owner)
    assert error_line(long_id) == "Error: run_id must be 32 bytes or less, got 33 bytes"
    index_only = cli.fails("create-run", "-r", "idx", "-c", "v1", "--treasurer-index", "3", "-w", owner)
    assert error_line(index_only) == (
        "Error: --treasurer-index needs --treasurer-collateral-mint (a treasurer run needs a mint)"
    )
    cli.ok("create-run", "-r", "twice", "-c", "v1", "-w", owner)
    again = cli.fails("create-run", "-r", "twice", "-c", "v1", "-w", owner)
    assert error_line(again).startswith("Error: run 'twice' already exists (instance account ")
    # RUN_ID and CLIENT_VERSION fill the flags from the environment.
    from_env = cli.json("create-run", "-w", owner, env={"RUN_ID": "env-run", "CLIENT_VERSION": "v9"})
    assert from_env["run_id"] == "env-run"


def test_update_config_errors_name_the_line(cli: Cli, owner: Path, tmp_path: Path) -> None:
    cli.ok("create-run", "-r", "cfg", "-c", "v1", "-w", owner)
    bad = tmp_path / "bad.toml"
    bad.write_text(run_toml(tmp_path).read_text().replace("epoch_time = 40", 'epoch_time = "forty"'))
    result = cli.fails("update-config", "-r", "cfg", "--config-path", bad, "-w", owner)
    assert error_line(result).startswith(f"Error: {bad}:7: config.epoch_time: got string 'forty'; ")
    insane = tmp_path / "insane.toml"
    insane.write_text(run_toml(tmp_path).read_text().replace("warmup_time = 5", "warmup_time = 50"))
    result = cli.fails("update-config", "-r", "cfg", "--config-path", insane, "-w", owner)
    assert error_line(result) == (
        f"Error: {insane}: [config] fails the coordinator's sanity check: "
        "warmup_time (50) must be < epoch_time (40)"
    )
    nothing = cli.fails("update-config", "-r", "cfg", "-w", owner)
    assert error_line(nothing) == "Error: this invocation would not update anything, bailing."
    meta = cli.json(
        "update-config", "-r", "cfg", "--description", "d", "--num-parameters", "20000000", "-w", owner
    )
    assert meta["changed"] == ["metadata"]
    setup = cli.json("json-dump-run", "-r", "cfg")["coordinator_account"]["setup"]
    assert setup["metadata"]["description"] == "d" and setup["metadata"]["num_parameters"] == 20_000_000
    # As the reference, CLIENT_VERSION (shell or .env) fills --client-version.
    bumped = cli.json("update-config", "-r", "cfg", "-w", owner, env={"CLIENT_VERSION": "v2"})
    assert bumped["changed"] == ["client_version"] and bumped["client_version"] == "v2"
    assert cli.json("json-dump-run", "-r", "cfg")["coordinator_account"]["setup"]["client_version"] == "v2"


def test_treasurer_run_rates_top_up_and_dump(cli: Cli, owner: Path, tmp_path: Path, net: Localnet) -> None:
    from psyche.manager.wallet import WalletSource, wallet_from_file

    key = wallet_from_file(owner, WalletSource("test")).keypair()
    mint = with_world(net, key, lambda w: w.create_mint(6))
    with_world(net, key, lambda w: w.mint_to(mint, key.pubkey(), 10_000_000))
    w = ("-w", owner)
    created = cli.json("create-run", "-r", "paid", "-c", "v1", "--treasurer-collateral-mint", str(mint), *w)
    assert created["treasurer_run"] is not None
    rates = cli.json("set-future-epoch-rates", "-r", "paid", "--earning-rate-total-shared", "1.5", *w)
    assert rates["earning_rate_total_shared"] == 1_500_000 and rates["slashing_rate_per_client"] is None
    top = cli.json("treasurer-top-up-rewards", "-r", "paid", "--collateral-amount", "2.25", *w)
    assert top["amount"] == 2_250_000 and top["treasury_balance"] == 2_250_000
    too_much = cli.fails("treasurer-top-up-rewards", "-r", "paid", "--collateral-amount", "100", *w)
    assert "less than 100" in error_line(too_much)
    cli.ok("update-config", "-r", "paid", "--config-path", run_toml(tmp_path), *w)
    cli.ok("set-paused", "-r", "paid", "--resume", *w)
    dump = cli.json("json-dump-run", "-r", "paid")
    treasurer = dump["treasurer_run"]
    assert treasurer["funded_collateral_amount"] == 2.25
    assert treasurer["total_claimable_earned_points"] == 0
    assert treasurer["collateral_mint"] == str(mint)
    assert dump["coordinator_account"]["epoch"]["rates"]["future"] == {"earning": 1_500_000, "slashing": 0}
    # Without a treasurer, rates are whole points.
    cli.ok("create-run", "-r", "plain", "-c", "v1", *w)
    plain = cli.json("set-future-epoch-rates", "-r", "plain", "--slashing-rate-per-client", "7", *w)
    assert plain["slashing_rate_per_client"] == 7
    frac = cli.fails("set-future-epoch-rates", "-r", "plain", "--earning-rate-total-shared", "0.5", *w)
    assert "rates are whole points" in error_line(frac)
    none = cli.fails("set-future-epoch-rates", "-r", "plain", *w)
    assert error_line(none) == "Error: give --earning-rate-total-shared and/or --slashing-rate-per-client"
    no_treasury = cli.fails("treasurer-top-up-rewards", "-r", "plain", "--collateral-amount", "1", *w)
    assert error_line(no_treasury) == (
        "Error: run 'plain' has no treasurer: only a treasurer-backed run holds rewards"
    )


def test_tick_and_checkpoint_refusals(cli: Cli, owner: Path) -> None:
    cli.ok("create-run", "-r", "halted", "-c", "v1", "-w", owner)
    tick = cli.fails("tick", "-r", "halted", "--count", "1", "-w", owner)
    assert error_line(tick) == "Error: run 'halted' is halted (Uninitialized): a halted run does not tick"
    ckpt = cli.fails("checkpoint", "-r", "halted", "--repo", "org/model", "-w", owner)
    assert "is not a client of run 'halted''s current epoch" in error_line(ckpt)
