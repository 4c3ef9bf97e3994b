"""The ``run-manager localnet`` command: start the local chain (on --host) and serve until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import time
from pathlib import Path

import click

from psyche.errors import ConfigError
from psyche.hosts import is_loopback

READY_LINE = "localnet ready"


async def _serve(
    *,
    rpc_port: int,
    ws_port: int,
    ledger: Path | None,
    reset: bool,
    slot_ms: int,
    clock_control: bool,
    demo_dir: Path | None,
    started: float,
    demo_clients: int = 1,
    host: str = "127.0.0.1",
) -> None:
    from psyche.localnet.chain import Chain
    from psyche.localnet.server import LocalnetServer

    try:
        chain = Chain.open(ledger, reset=reset)
    except (OSError, sqlite3.Error) as exc:
        raise _ledger_error(ledger, exc) from exc
    server = LocalnetServer(
        chain, rpc_port=rpc_port, ws_port=ws_port, slot_ms=slot_ms, clock_control=clock_control, host=host
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    try:
        click.echo(f"RPC URL: {server.rpc_url}")
        click.echo(f"WebSocket URL: {server.ws_url}")
        if not is_loopback(host):
            click.echo(
                f"Listening on {host}: whoever reaches it can use this chain "
                "(a public faucet, no access control)"
            )
        click.echo(f"Ledger: {ledger if ledger is not None else 'memory only (use --ledger DIR to persist)'}")
        if clock_control:
            click.echo("Clock control: on (localnet_advanceClock)")
        elapsed_ms = (time.perf_counter() - started) * 1000
        click.echo(f"{READY_LINE}: slot {chain.ledger.slot}, started in {elapsed_ms:.0f} ms", nl=True)
        if demo_dir is not None:
            from psyche.localnet.demo import seed_demo

            await seed_demo(server.rpc_url, server.ws_url, demo_dir, echo=click.echo, clients=demo_clients)
        await stop.wait()
    finally:
        click.echo("localnet stopping")
        await server.stop()


def _ledger_error(ledger: Path | None, exc: OSError | sqlite3.Error) -> ConfigError:
    if isinstance(exc, FileExistsError | NotADirectoryError):
        problem = "not a directory"
    elif isinstance(exc, OSError):
        problem = f"cannot use it ({exc.strerror or type(exc).__name__})"
    else:
        problem = f"cannot open the ledger in it ({exc})"
    return ConfigError(
        f"--ledger {ledger}: {problem}; pass a directory the localnet may create and write, "
        "or add --reset to start a damaged ledger afresh"
    )


@click.command("localnet")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on (RPC and WebSocket); the URLs printed and written by --demo name it. "
    "Anything but loopback lets others use this chain: it has a public faucet and no access control.",
)
@click.option(
    "--rpc-port", type=click.IntRange(0, 65535), default=8899, show_default=True, help="JSON-RPC port."
)
@click.option(
    "--ws-port", type=click.IntRange(0, 65535), default=8900, show_default=True, help="WebSocket port."
)
@click.option(
    "--ledger",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Directory for a persistent ledger (SQLite, WAL). Without it the chain lives in memory only.",
)
@click.option("--reset", is_flag=True, help="Delete the ledger in --ledger before starting.")
@click.option(
    "--slot-ms", type=click.IntRange(1, 60_000), default=400, show_default=True, help="Slot length in ms."
)
@click.option(
    "--clock-control",
    is_flag=True,
    help="Enable the test-only RPC method localnet_advanceClock [seconds] (moves the chain clock on).",
)
@click.option(
    "--demo",
    "demo_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    is_flag=False,
    flag_value=Path("localnet-demo"),
    help="Seed a ready-to-join world (runs, wallets, .env) and write its files to this directory "
    "[default: ./localnet-demo].",
)
@click.option(
    "--demo-clients",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="With --demo: client wallets to create (participant.json, participant-2.json, ...), 10 SOL each.",
)
def localnet(
    host: str,
    rpc_port: int,
    ws_port: int,
    ledger: Path | None,
    reset: bool,
    slot_ms: int,
    clock_control: bool,
    demo_dir: Path | None,
    demo_clients: int,
) -> None:
    """Run a local Solana-compatible chain with the Psyche programs (on 127.0.0.1 unless --host says so)."""
    started = time.perf_counter()
    asyncio.run(
        _serve(
            rpc_port=rpc_port,
            ws_port=ws_port,
            ledger=ledger,
            reset=reset,
            slot_ms=slot_ms,
            clock_control=clock_control,
            demo_dir=demo_dir,
            started=started,
            demo_clients=demo_clients,
            host=host,
        )
    )
