"""`run-manager doctor`: wire the real probes into the checks, render the report, exit 1 on a FAIL."""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import click
from rich.text import Text

from psyche.manager.app import App
from psyche.manager.commands.common import cluster_options

if TYPE_CHECKING:
    from psyche.manager.doctor import ChainProbe, Seams
    from psyche.manager.doctor_report import Check, EngineProbe
    from psyche.manager.ui import UI


class _FiniteRange(click.FloatRange):
    """A FloatRange that also refuses nan (every comparison with nan is false, so the range lets it in)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        number = super().convert(value, param, ctx)
        if math.isnan(number):
            self.fail(f"{value!r} is not a number", param, ctx)
        return number


_STYLE = {"OK": "green", "WARN": "yellow", "FAIL": "bold red", "SKIP": "dim"}


def real_seams(app: App, engines: list[EngineProbe]) -> Seams:
    """The doctor's edges for this process; every engine opened is appended to ``engines`` to close later."""
    import os
    import time

    from psyche.chain.rpc import RpcClient
    from psyche.manager import hardware
    from psyche.manager.doctor import Seams
    from psyche.manager.doctor_p2p import SocketProbe
    from psyche.manager.engines import cdi_spec_present
    from psyche.manager.procruntime import probe_client
    from psyche.manager.wallet import load_wallet

    def rpc(urls: Sequence[str], timeout: float) -> ChainProbe:
        # One pass, no retries: the doctor reports each endpoint as it is, it does not ride out blips.
        return RpcClient(list(urls), timeout=timeout, max_rounds=1)

    def runtime() -> EngineProbe:
        from psyche.manager.runtime import DockerRuntime

        engine = DockerRuntime(environ=app.environ)
        engines.append(engine)
        return engine

    return Seams(
        settings=lambda: app.settings,
        wallet=load_wallet,
        rpc=rpc,
        ws=hardware.ws_round_trip,
        runtime=runtime,
        gpus=hardware.probe_gpus,
        nvidia_hook=hardware.find_nvidia_hook,
        disk_usage=hardware.disk_usage,
        parallelism_table=hardware.load_parallelism_table,
        file_mode=lambda path: path.stat().st_mode,
        monotonic=time.monotonic,
        p2p=SocketProbe(),
        cdi_spec=lambda: cdi_spec_present(os.listdir),
        client=probe_client,
    )


def summary(checks: Sequence[Check]) -> str:
    """'12 OK, 2 WARN, 3 FAIL' (statuses that occur, in that order)."""
    counts = Counter(str(c.status) for c in checks)
    return ", ".join(f"{counts[s]} {s}" for s in ("OK", "WARN", "FAIL", "SKIP") if counts[s])


def render(ui: UI, checks: Sequence[Check]) -> None:
    """One line per check on stdout, its fix on the next line; a summary last. Never wrapped or cut."""
    width = max(len(c.name) for c in checks)
    indent = " " * (6 + width + 2)
    for check in checks:
        line = Text()
        line.append(f"{check.status!s:<4}", style=_STYLE[str(check.status)])
        line.append(f"  {check.name:<{width}}  {check.detail}")
        ui.out.print(line, soft_wrap=True)
        if check.fix and check.status != "OK":
            ui.out.print(Text(f"{indent}fix: {check.fix}"), soft_wrap=True)
    ui.out.print(Text(f"doctor: {summary(checks)}", style="bold"), soft_wrap=True)


def report_json(checks: Sequence[Check], code: int) -> str:
    """The report for machines: every check, the counts, and the exit code."""
    counts = Counter(str(c.status) for c in checks)
    body = {
        "ok": code == 0,
        "exit_code": code,
        "counts": {s: counts[s] for s in ("OK", "WARN", "FAIL", "SKIP")},
        "checks": [c.to_json() for c in checks],
    }
    return json.dumps(body, indent=2)


@click.command("doctor")
@cluster_options
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON on stdout.")
@click.option("--local", is_flag=True, help="Check the local image (no pull) for the run's client_version.")
@click.option(
    "--no-gpus", "no_gpus", is_flag=True, help="The client will run without GPUs (missing GPUs warn)."
)
@click.option(
    "--image-size",
    type=_FiniteRange(min=0, max=1_000_000),
    default=20.0,
    show_default=True,
    help="GiB of free disk the client image needs when it is not pulled yet.",
)
@click.option(
    "--timeout",
    type=_FiniteRange(min=0.1, max=600),
    default=5.0,
    show_default=True,
    help="Seconds per probe (at most 600).",
)
@click.pass_obj
def doctor(app: App, as_json: bool, local: bool, no_gpus: bool, image_size: float, timeout: float) -> None:
    """Check everything a join needs and print one line per check (OK / WARN / FAIL) with its fix.

    Covers the .env, the wallet (file mode, SOL balance), each RPC and WS endpoint (latency), the run
    (state, client_version, image), the wallet's authorization, the P2P port, advertised address and
    bootstrap peers, Docker (API version) and GPU access, the GPUs and the parallelism settings, free disk
    and shm. Exit code 0 only when nothing FAILs.
    """
    from psyche.manager.doctor import run_doctor
    from psyche.manager.doctor_report import DoctorOptions, exit_code
    from psyche.manager.runtime import engine_is_local

    options = DoctorOptions(
        local=local or app.options.local,
        repository=app.options.image_repository,
        timeout=timeout,
        image_size=int(image_size * 2**30),
        gpus=app.options.gpus and not no_gpus,
        wallet_key_via=app.options.wallet_key_via,
        local_engine=engine_is_local(app.environ),
        runtime=app.options.runtime,
    )
    engines: list[EngineProbe] = []
    try:
        checks = run_doctor(real_seams(app, engines), options)
    finally:
        for engine in engines:
            close = getattr(engine, "close", None)
            if callable(close):
                close()
    code = exit_code(checks)
    if as_json:
        app.ui.data(report_json(checks, code))
    else:
        render(app.ui, checks)
    if code:
        app.abort(code)
