"""``python -m psyche.client``: the container entrypoint (restart loop); with ``train``: one client run."""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from types import FrameType

from psyche.client.entrypoint import EXIT_FAILURE, RestartLoop, missing_required, run_once
from psyche.env_contract import ClientEnvVars
from psyche.errors import RunManagerError

log = logging.getLogger("psyche.client")


def _on_signals(handler: Callable[[], None]) -> None:
    def on_signal(signum: int, frame: FrameType | None) -> None:
        handler()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)


def _fail(message: str) -> int:
    print(f"[!] {message}", file=sys.stderr, flush=True)
    return EXIT_FAILURE


def check_config() -> None:
    """Parse everything the client reads, so that a bad value fails once, at once, before any restart."""
    from psyche.client.config import load_trainer_env
    from psyche.client.env import load_client_env
    from psyche.p2p.settings import load_p2p_settings

    load_client_env()
    load_trainer_env()
    load_p2p_settings(os.environ)


def entrypoint() -> int:
    """The reference entrypoint: required variables, a config check, then the restart loop (or one run)."""
    missing = missing_required(os.environ)
    if missing is not None:
        print(f"[!] The {missing} env variable was not set.", flush=True)
        return EXIT_FAILURE
    try:
        check_config()
    except RunManagerError as exc:
        return _fail(str(exc))
    once = run_once(os.environ)
    loop = RestartLoop(say=lambda line: print(line, flush=True), once=once)
    _on_signals(loop.stop)
    run_id = os.environ[ClientEnvVars.RUN_ID].strip().strip('"')
    how = " (run once: the run-manager restarts it)" if once else ""
    print(f"[+] Psyche reference client, run {run_id}{how}", flush=True)
    return loop.run()


def train() -> int:
    """One client run: follow the run until it finishes (0), the version differs (10), or a failure (1)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stdout)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    from psyche.chain.rpc import RpcClient
    from psyche.client.config import load_trainer_env
    from psyche.client.env import load_client_env
    from psyche.client.identity import derive_identity
    from psyche.client.protocol import ClientProtocol
    from psyche.client.runner import ChainPort, Runner
    from psyche.client.sharing import start_sharing
    from psyche.client.trainer_port import TorchTrainerPort
    from psyche.p2p.settings import load_p2p_settings

    try:
        env = load_client_env()
        trainer_env = load_trainer_env()
        p2p = load_p2p_settings(os.environ)
    except RunManagerError as exc:
        return _fail(str(exc))
    identity = derive_identity(env.run_id, env.keypair, env.identity_secret)
    me = env.keypair.pubkey()
    log.info("wallet %s, run %s, RPC %s", me, env.run_id, ", ".join(e.__str__() for e in env.endpoints))
    try:
        sharing = start_sharing(identity, p2p, rpc_urls=env.rpc_urls, status_dir=trainer_env.checkpoint_dir)
    except RunManagerError as exc:  # the port is taken, or the address is not this host's
        return _fail(str(exc))
    rpc = RpcClient(env.rpc_urls)
    port = TorchTrainerPort(trainer_env, env.run_id, sharing=sharing)
    try:
        chain, first = ChainPort.locate(
            rpc, env.keypair, env.run_id, env.authorizer, identity.public, env.programs
        )
        protocol = ClientProtocol(me, identity.public, env.client_version, sharing=sharing)
        runner = Runner(protocol, chain, port, ws_urls=env.ws_urls, sharing=sharing)
        sharing.on_change = runner.sharing_changed
        port.on_failure = runner.fail  # a training rank died: every rank stops, exit 1
        _on_signals(runner.stop)
        code = runner.run(first)
    except RunManagerError as exc:
        log.error("%s", exc)
        code = EXIT_FAILURE
    finally:
        rpc.close()
        sharing.close()
        port.close()  # the other training ranks (dp x tp > 1) stop with us, whatever the exit
    if port.failure is not None:
        _fail(port.failure)
        sys.stdout.flush()
        # Our training thread may still be blocked in a collective with the dead rank; joining it at
        # interpreter exit could hang, so leave now.
        os._exit(EXIT_FAILURE)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch the command line: no arguments runs :func:`entrypoint`, ``train`` one client run; returns
    the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["train"]:
        return train()
    if args:
        return _fail(f"unknown arguments: {' '.join(args)} (use no arguments, or 'train')")
    return entrypoint()


if __name__ == "__main__":
    sys.exit(main())
