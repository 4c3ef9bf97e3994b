"""Main-job end-to-end helpers: local-chain runs, a participant wallet, a .env, the run-manager subprocess."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import docker
import pytest
from docker.models.containers import Container
from solders.keypair import Keypair

from tests.support.commands import Cli, Localnet, localnet_process, write_keypair
from tests.support.engine import SESSION_ID, BuildImage, Engine, PushedImage, delete_from_registry

RUN_MANAGER = Path(sys.executable).with_name("run-manager")
PERMISSIONLESS = "11111111111111111111111111111111"
LABEL_RUN_ID = "io.psyche.run-manager.run-id"
LABEL_CLIENT_VERSION = "io.psyche.run-manager.client-version"

# A client that says hello, ticks, and stops at once on SIGTERM (busybox sh as PID 1 ignores an
# untrapped SIGTERM, which would make every stop wait out the grace period).
TICKING = (
    "trap 'echo client $CLIENT_VERSION got TERM; exit 0' TERM; "
    'echo "client $CLIENT_VERSION up run=$RUN_ID"; '
    "i=0; while :; do i=$((i+1)); echo tick $i; sleep 0.1; done"
)

# Variables of the developer's shell that would steer the child run-manager.
_LEAKY_PREFIXES = ("RPC", "WS_RPC", "RUN_MANAGER_")
_LEAKY = {"RUN_ID", "AUTHORIZER", "WALLET_PATH", "WALLET_PRIVATE_KEY_PATH", "RAW_WALLET_PRIVATE_KEY"}


def new_run_id() -> str:
    return f"mj-{uuid.uuid4().hex[:12]}"


@dataclass
class Chain:
    """A `run-manager localnet` subprocess plus a funded owner that creates and edits runs via the CLI."""

    net: Localnet
    home: Path
    owner: Path
    cli: Cli

    def create_run(self, run_id: str, client_version: str, *, join_authority: str | None = None) -> None:
        """A run left Uninitialized (halted, so its client_version may change while clients run)."""
        extra = ("--join-authority", join_authority) if join_authority else ()
        self.cli.ok("create-run", "-r", run_id, "-c", client_version, "-w", self.owner, *extra)

    def create_run_with_unchecked_version(self, run_id: str, client_version: str) -> None:
        """A run whose client_version no owner command would send (create-run and update-config check it,
        as the main job does): created with a valid one, then set by a raw signed update_client_version."""
        from psyche.chain import queries
        from psyche.chain.instructions import coordinator as ix
        from psyche.chain.rpc import RpcClient
        from psyche.chain.transactions import send_and_confirm

        self.create_run(run_id, "unchecked-placeholder")
        owner = Keypair.from_bytes(bytes(json.loads(self.owner.read_text())))
        with contextlib.closing(RpcClient([self.net.rpc_url])) as rpc:
            run = queries.fetch_run(rpc, run_id)
            instruction = ix.update_client_version(
                owner.pubkey(), run.instance_address, run.instance.coordinator_account, client_version
            )
            send_and_confirm(rpc, [instruction], owner)

    def authorize_everyone(self) -> None:
        """The owner (each run's default join authority) lets any key join its runs."""
        self.cli.ok("join-authorization-create", "--authorizer", PERMISSIONLESS, "-w", self.owner)

    def set_version(self, run_id: str, client_version: str) -> None:
        """`update-config --client-version` through the real command; returns once confirmed."""
        self.cli.ok("update-config", "-r", run_id, "--client-version", client_version, "-w", self.owner)


@contextlib.contextmanager
def chain(home: Path, **localnet: Any) -> Iterator[Chain]:
    """A local chain with a funded owner who authorized everyone to join its runs (see localnet_process)."""
    with localnet_process(**localnet) as net:
        owner_key = Keypair()
        net.airdrop(owner_key)
        keys = home / "keys"
        keys.mkdir(parents=True, exist_ok=True)
        world = Chain(net, home, write_keypair(keys, "owner", owner_key), Cli(net, home))
        world.authorize_everyone()
        yield world


@dataclass(frozen=True, slots=True)
class Participant:
    """A wallet file, and every text form its secret could leak in."""

    keypair: Keypair
    path: Path

    @property
    def secret_forms(self) -> list[str]:
        raw = bytes(self.keypair)
        return [
            ",".join(str(b) for b in raw),  # the JSON array, with or without spaces after commas
            ", ".join(str(b) for b in raw),
            str(self.keypair),  # base58 of the 64 bytes
            raw.hex(),
        ]

    def assert_absent(self, *texts: str) -> None:
        for text in texts:
            for form in self.secret_forms:
                assert form not in text, "the wallet secret leaked"


def participant(directory: Path, name: str = "participant") -> Participant:
    key = Keypair()
    directory.mkdir(parents=True, exist_ok=True)
    return Participant(key, write_keypair(directory, name, key))


def write_env(
    path: Path,
    *,
    rpc: str,
    ws: str,
    wallet: Path,
    run_id: str | None,
    extra: Mapping[str, str] | None = None,
) -> Path:
    """A .env the way users write one: endpoints, the run, the wallet path, anything else passed through."""
    lines = [f"RPC={rpc}", f"WS_RPC={ws}", f"WALLET_PRIVATE_KEY_PATH={wallet}"]
    if run_id is not None:
        lines.append(f"RUN_ID={run_id}")
    lines += [f"{k}={v}" for k, v in (extra or {}).items()]
    path.write_text("\n".join(lines) + "\n")
    return path


# What a real client needs to train on a CPU in a test: the tiny preset, one thread.
CPU_CLIENT = {"DEVICE": "cpu", "MODEL_PRESET": "tiny", "OMP_NUM_THREADS": "1"}


@dataclass(frozen=True, slots=True)
class CpuClient:
    """One participant of a run on the local chain: its funded wallet, its scratch folder and its .env."""

    wallet: Participant
    scratch: Path
    env_file: Path


def cpu_client(
    world: Chain,
    directory: Path,
    run_id: str,
    name: str = "participant",
    extra: Mapping[str, str] | None = None,
) -> CpuClient:
    """A participant ready to start: a wallet funded with 10 SOL, ``<name>-scratch/`` and ``<name>.env``.

    The .env names the chain, the run and the wallet, and runs the client on a CPU (``CPU_CLIENT``) with
    ``extra`` on top.
    """
    wallet = participant(directory / "keys", name)
    world.net.airdrop(wallet.keypair, 10 * 10**9)
    scratch = directory / f"{name}-scratch"
    scratch.mkdir()
    env_file = write_env(
        directory / f"{name}.env",
        rpc=world.net.rpc_url,
        ws=world.net.ws_url,
        wallet=wallet.path,
        run_id=run_id,
        extra={**CPU_CLIENT, **(extra or {}), "SCRATCH_DIR": str(scratch)},
    )
    return CpuClient(wallet, scratch, env_file)


def manager_environ(home: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The child's environment: ours minus run-manager settings, with small restart timings for tests."""
    env = {k: v for k, v in os.environ.items() if k not in _LEAKY and not k.startswith(_LEAKY_PREFIXES)}
    env.update(
        HOME=str(home),
        NO_COLOR="1",
        COLUMNS="200",
        RUN_MANAGER_RESTART_BACKOFF="0.2",
        RUN_MANAGER_MAX_RESTARTS="2",
    )
    env.update(extra or {})
    return env


@dataclass
class Output:
    """Lines of one stream with the monotonic time each arrived; waitable."""

    lines: list[tuple[float, str]] = field(default_factory=list)
    done: bool = False
    cond: threading.Condition = field(default_factory=threading.Condition)

    def pump(self, stream: IO[str]) -> None:
        for line in stream:
            with self.cond:
                self.lines.append((time.monotonic(), line.rstrip("\n")))
                self.cond.notify_all()
        with self.cond:
            self.done = True
            self.cond.notify_all()

    @property
    def text(self) -> str:
        with self.cond:
            return "\n".join(line for _, line in self.lines)

    def wait_for(self, needle: str, timeout: float = 30.0, *, start: int = 0) -> int:
        """Index of the first line at or after ``start`` containing ``needle``."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for i in range(start, len(self.lines)):
                    if needle in self.lines[i][1]:
                        return i
                left = deadline - time.monotonic()
                if left <= 0 or self.done:
                    raise AssertionError(
                        f"no line with {needle!r} within {timeout} s; got:\n{self.text_locked()}"
                    )
                self.cond.wait(left)

    def text_locked(self) -> str:
        return "\n".join(line for _, line in self.lines[-60:])


class Manager:
    """`run-manager --env-file ...` as a real subprocess (own session: signals go to it alone)."""

    def __init__(self, args: Sequence[str], env: Mapping[str, str]) -> None:
        self.argv = [str(RUN_MANAGER), *args]
        self.proc = subprocess.Popen(
            self.argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env=dict(env),
            start_new_session=True,
        )
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self.out = Output()
        self.err = Output()
        self._threads = [
            threading.Thread(target=self.out.pump, args=(self.proc.stdout,), daemon=True),
            threading.Thread(target=self.err.pump, args=(self.proc.stderr,), daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 30.0) -> int:
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"run-manager still running after {timeout} s:\n{self.err.text}") from None
        for thread in self._threads:
            thread.join(timeout=10)
        return code

    def close(self) -> None:
        """Kill it if a failed test left it running; close the pipes."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for thread in self._threads:
            thread.join(timeout=10)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


def run_containers(client: docker.DockerClient, run_id: str) -> list[Container]:
    """Every container (running or not) any run-manager made for ``run_id``."""
    return list(client.containers.list(all=True, filters={"label": f"{LABEL_RUN_ID}={run_id}"}))


def remove_run_containers(client: docker.DockerClient, run_id: str) -> None:
    for container in run_containers(client, run_id):
        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True)


def manager_args(
    env_file: Path,
    *,
    repository: str,
    script: str | None = TICKING,
    gpus: bool = False,
    extra: Sequence[str] = (),
) -> list[str]:
    """Root flags for a busybox client: the loopback repository, no GPUs, ``sh -c script`` as the client."""
    args = ["--env-file", str(env_file), "--image-repository", repository, "--gpus" if gpus else "--no-gpus"]
    args += list(extra)
    if script is not None:
        args += ["--entrypoint", "/bin/sh", "--", "-c", script]
    return args


@dataclass
class Job:
    """One test's run on the shared chain: its participant, .env, run-manager processes and containers."""

    world: Chain
    docker: docker.DockerClient | None  # None: the process runtime, no engine
    repository: str
    run_id: str
    wallet: Participant
    directory: Path
    managers: list[Manager] = field(default_factory=list)
    docker_host: str | None = None  # the engine the run-manager drives (None: DOCKER_HOST of this process)

    def env_file(
        self,
        *,
        rpc: str | None = None,
        ws: str | None = None,
        extra: Mapping[str, str] | None = None,
        name: str = ".env",
    ) -> Path:
        return write_env(
            self.directory / name,
            rpc=rpc or self.world.net.rpc_url,
            ws=ws or self.world.net.ws_url,
            wallet=self.wallet.path,
            run_id=self.run_id,
            extra=extra,
        )

    def start(
        self,
        script: str | None = TICKING,
        *,
        env_file: Path | None = None,
        gpus: bool = False,
        extra_args: Sequence[str] = (),
        environ: Mapping[str, str] | None = None,
    ) -> Manager:
        args = manager_args(
            env_file or self.env_file(),
            repository=self.repository,
            script=script,
            gpus=gpus,
            extra=extra_args,
        )
        engine = {"DOCKER_HOST": self.docker_host} if self.docker_host else {}
        manager = Manager(args, manager_environ(self.world.home, {**engine, **(environ or {})}))
        self.managers.append(manager)
        return manager

    def containers(self) -> list[Container]:
        return [] if self.docker is None else run_containers(self.docker, self.run_id)

    def close(self) -> None:
        for manager in self.managers:
            manager.close()
        if self.docker is not None:
            remove_run_containers(self.docker, self.run_id)


# -- fixtures (import them into a test module by name) -----------------------------------------------


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    """One local chain per test module (start-up is the slow part), with an owner who authorized everyone."""
    with chain(tmp_path_factory.mktemp("mainjob-chain")) as started:
        yield started


def push(client: docker.DockerClient, image: PushedImage) -> None:
    for event in client.api.push(image.repository, tag=image.tag, stream=True, decode=True):
        if "error" in event:
            raise AssertionError(f"push of {image.ref} failed: {event['error']}")


def build_version(
    client: docker.DockerClient, base: PushedImage, tag: str, labels: Mapping[str, str] | None = None
) -> PushedImage:
    """``base`` plus a label naming ``tag`` (and any ``labels``): a manifest digest no other tag (or
    developer) shares, so deleting it from the registry touches nothing else."""
    image = PushedImage(base.repository, f"{tag}-{SESSION_ID}")
    extra = "".join(f"LABEL {k}={v}\n" for k, v in (labels or {}).items())
    dockerfile = f"FROM {base.ref}\nLABEL io.psyche.test.version={image.tag}\n{extra}"
    client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=image.ref, rm=True, forcerm=True)
    push(client, image)
    return image


@pytest.fixture(scope="module")
def versions(
    docker_client: docker.DockerClient, registry: str, busybox_image: BuildImage
) -> Iterator[tuple[PushedImage, PushedImage]]:
    """Two images in the loopback registry, each with its own digest: the run's client versions A and B."""
    base = busybox_image("mj-base")
    built = (build_version(docker_client, base, "mj-a"), build_version(docker_client, base, "mj-b"))
    yield built
    for image in built:
        with contextlib.suppress(docker.errors.ImageNotFound):
            docker_client.images.remove(image.ref, force=True)
        delete_from_registry(registry, image)


# Parametrise a test with this to run it against Docker and against Podman (the `job` uses `engine`).
both_engines = pytest.mark.parametrize("engine", ["docker", "podman"], indirect=True)


@pytest.fixture
def job(
    world: Chain,
    engine: Engine,
    versions: tuple[PushedImage, PushedImage],
    tmp_path: Path,
) -> Iterator[Job]:
    """A fresh run id and participant on ``engine`` (Docker unless parametrised with ``both_engines``);
    every run-manager and container of the test is gone afterwards."""
    started = Job(
        world,
        engine.client,
        versions[0].repository,
        new_run_id(),
        participant(tmp_path / "keys"),
        tmp_path,
        docker_host=engine.host,
    )
    try:
        yield started
    finally:
        started.close()
