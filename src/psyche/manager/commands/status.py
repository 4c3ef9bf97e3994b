"""The `status` command: one screen on the supervised container, the run and the wallet's rewards."""

from __future__ import annotations

import json
import time

import click

from psyche.errors import WalletError
from psyche.manager.app import App
from psyche.manager.commands.common import cluster_options, wallet_option


@click.command("status")
@cluster_options
@wallet_option
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON on stdout.")
@click.pass_obj
def status(app: App, as_json: bool) -> None:
    """Show the supervised client container (image, version, uptime, restarts), the run's state, epoch and
    step, the client's P2P node (peers seen, results received and applied last round, refusals; from
    SCRATCH_DIR/p2p-status.json), and the wallet's earned, claimed and claimable rewards. Exit 0 when a
    container runs, else 1."""
    from solders.pubkey import Pubkey

    from psyche.manager.commands.common import Session
    from psyche.manager.runtime import DockerRuntime
    from psyche.manager.status import collect, p2p_status_path, render

    settings = app.settings
    try:
        user: Pubkey | None = app.wallet.keypair().pubkey()
    except WalletError as exc:
        app.ui.warning(f"wallet: {exc.message}")
        user = None
    runtimes: list[DockerRuntime] = []

    def runtime() -> DockerRuntime:
        runtimes.append(DockerRuntime(environ=app.environ))
        return runtimes[-1]

    try:
        report = collect(
            runtime=runtime,
            rpc=lambda: app.rpc,
            run_id=settings.run_id or None,
            user=user,
            programs=Session(app).programs,
            now=time.time(),
            p2p_file=p2p_status_path(settings.scratch_dir, settings.passthrough.get("CHECKPOINT_DIR")),
        )
    finally:
        for opened in runtimes:
            opened.close()
    if as_json:
        app.ui.data(json.dumps(report.to_json(), indent=2))
    else:
        for line in render(report):
            app.ui.data(line)
    if report.exit_code:
        app.abort(report.exit_code)
