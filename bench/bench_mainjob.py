"""Bench: the main job end to end: start overhead, version-change reaction, log throughput, peak RSS.

Run from the repository root with the dev engine and loopback registry up (scripts/services start):
``DOCKER_HOST=unix:///tmp/psyche-docker/docker.sock .venv/bin/python bench/bench_mainjob.py [--samples N]
[--only logs] [--engine docker|podman|both]``. ``--engine podman`` (or ``both``, one run, Docker first) drives
the private Podman service (scripts/services start --engine podman; PSYCHE_PODMAN_HOST); the images are
always built with Docker and pulled by the engine under test.
run-manager runs as a subprocess (``.venv/bin/run-manager --env-file ...``) against `run-manager localnet`;
the client is a busybox image pushed to the loopback registry. Each figure is printed with its target.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO

# The helpers live with the tests; the bench is a script, so make the repo root importable.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import docker
from tests.support.engine import PushedImage, busybox_rootfs, delete_from_registry
from tests.support.mainjob import (
    LABEL_RUN_ID,
    TICKING,
    Chain,
    Manager,
    chain,
    manager_args,
    manager_environ,
    participant,
    push,
    write_env,
)

DOCKER = "/usr/bin/docker"
REGISTRY = os.environ.get("RUN_MANAGER_TEST_REGISTRY", "127.0.0.1:5000")
REPOSITORY = f"{REGISTRY}/psyche-test-bb"
UP = "echo up; exit 0"


@contextlib.contextmanager
def images(client: docker.DockerClient) -> Iterator[tuple[PushedImage, PushedImage]]:
    """Two busybox images (own digests) in the loopback registry; removed from it and the engine after."""
    tag = uuid.uuid4().hex[:8]
    with tempfile.TemporaryDirectory() as tmp:
        context = Path(tmp)
        busybox_rootfs(context / "rootfs")
        (context / "Dockerfile").write_text('FROM scratch\nCOPY rootfs/ /\nENV PATH=/bin\nCMD ["sh"]\n')
        built = []
        for name in ("a", "b"):
            image = PushedImage(REPOSITORY, f"bench-{name}-{tag}")
            dockerfile = (context / "Dockerfile").read_text() + f"LABEL io.psyche.bench={image.tag}\n"
            (context / "Dockerfile").write_text(dockerfile)
            client.images.build(path=str(context), tag=image.ref, rm=True, forcerm=True)
            push(client, image)
            built.append(image)
    try:
        yield built[0], built[1]
    finally:
        for image in built:
            with contextlib.suppress(docker.errors.ImageNotFound):
                client.images.remove(image.ref, force=True)
            delete_from_registry(REGISTRY, image)


def spread(values: list[float]) -> str:
    return f"median {statistics.median(values):.3f} s (min {min(values):.3f}, max {max(values):.3f})"


class Peak:
    """Polls VmHWM (peak resident set) of every process it is given; keeps the largest, in kB."""

    def __init__(self) -> None:
        self.kb = 0
        self.where = ""
        self.by_label: dict[str, int] = {}

    def sample(self, pid: int, label: str) -> None:
        with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    kb = int(line.split()[1])
                    self.by_label[label] = max(kb, self.by_label.get(label, 0))
                    if kb > self.kb:
                        self.kb, self.where = kb, label

    def watch(self, manager: Manager, label: str) -> threading.Thread:
        def loop() -> None:
            while manager.proc.poll() is None:
                self.sample(manager.pid, label)
                time.sleep(0.2)

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        return thread


class Bench:
    def __init__(
        self,
        world: Chain,
        client: docker.DockerClient,
        a: PushedImage,
        b: PushedImage,
        engine: str = "docker",
        host: str | None = None,
    ) -> None:
        self.world, self.client, self.a, self.b = world, client, a, b
        self.engine = engine
        self.host = host or os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        self.dir = Path(tempfile.mkdtemp(prefix="bench-mainjob-"))
        self.wallet = participant(self.dir / "keys")
        self.peak = Peak()
        self.environ = manager_environ(world.home, {"DOCKER_HOST": self.host})

    def new_run(self, version: str) -> Path:
        run_id = f"bm-{uuid.uuid4().hex[:12]}"
        self.world.create_run(run_id, version)
        net = self.world.net
        return write_env(
            self.dir / f"{run_id}.env", rpc=net.rpc_url, ws=net.ws_url, wallet=self.wallet.path, run_id=run_id
        )

    def manager(self, env_file: Path, script: str) -> Manager:
        return Manager(manager_args(env_file, repository=REPOSITORY, script=script), self.environ)

    def cleanup(self, env_file: Path) -> None:
        run_id = env_file.stem
        for container in self.client.containers.list(all=True, filters={"label": f"{LABEL_RUN_ID}={run_id}"}):
            container.remove(force=True)

    # -- (1) start overhead --------------------------------------------------------------------

    def docker_run_up(self) -> float:
        began = time.monotonic()
        proc = subprocess.Popen(
            [DOCKER, "-H", self.host, "run", "--rm", "--network", "host", self.a.ref, "sh", "-c", UP],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        line = proc.stdout.readline()
        up = time.monotonic() - began
        assert line.strip() == "up", line
        assert proc.wait(60) == 0
        proc.stdout.close()
        return up

    def manager_up(self, env_file: Path) -> float:
        began = time.monotonic()
        manager = self.manager(env_file, UP)
        self.peak.watch(manager, "start")
        try:
            index = manager.out.wait_for("up", timeout=60)
        except AssertionError:
            manager.close()
            raise AssertionError(f"run-manager printed no 'up':\n{manager.err.text}") from None
        up = manager.out.lines[index][0] - began
        assert manager.wait(60) == 0, manager.err.text
        manager.close()
        return up

    def start_overhead(self, samples: int) -> None:
        env_file = self.new_run(self.a.tag)
        self.docker_run_up()  # warm both paths once (page cache, engine)
        self.manager_up(env_file)
        bare, managed = [], []
        for _ in range(samples):
            bare.append(self.docker_run_up())
            managed.append(self.manager_up(env_file))
        self.cleanup(env_file)
        b, m = statistics.median(bare), statistics.median(managed)
        print(
            f"(1) [{self.engine}] start -> client's first line, image cached, {samples} samples each:\n"
            f"    docker run --rm --network host: {spread(bare)}\n"
            f"    run-manager --env-file:         {spread(managed)}\n"
            f"    ratio {m / b:.2f}x, added {m - b:.3f} s   [target: < 1.0 s added]"
        )

    # -- (2) version-change reaction -----------------------------------------------------------

    def version_reaction(self, samples: int) -> None:
        env_file = self.new_run(self.a.tag)
        run_id = env_file.stem
        manager = self.manager(env_file, TICKING)
        self.peak.watch(manager, "supervising (version swaps)")
        manager.out.wait_for(f"client {self.a.tag} up", timeout=60)
        reactions, pulls = [], []
        current = self.a
        for _ in range(samples):
            target = self.b if current is self.a else self.a
            # In the registry, not in the engine: a real pull (Podman says "image not known": a NotFound).
            with contextlib.suppress(docker.errors.NotFound):
                self.client.images.remove(target.ref)
            start_out, start_err = len(manager.out.lines), len(manager.err.lines)
            self.world.set_version(run_id, target.tag)  # returns once the transaction is confirmed
            confirmed = time.monotonic()
            index = manager.out.wait_for(f"client {target.tag} up", timeout=60, start=start_out)
            reactions.append(manager.out.lines[index][0] - confirmed)
            pulled = manager.err.lines[manager.err.wait_for(f"pulled {target.ref} in", start=start_err)][1]
            pulls.append(float(pulled.rsplit(" in ", 1)[1].rstrip("s")))
            current = target
            time.sleep(0.5)
        manager.signal(signal.SIGTERM)
        assert manager.wait(30) == 0, manager.err.text
        manager.close()
        self.cleanup(env_file)
        r = statistics.median(reactions)
        p = statistics.median(pulls)
        print(
            f"(2) [{self.engine}] confirmed update-config -> new client's first line, {samples} swaps "
            "(pull included):\n"
            f"    median {r:.3f} s (min {min(reactions):.3f}, max {max(reactions):.3f}); "
            f"pull median {p:.2f} s (as run-manager reports, 0.1 s resolution); "
            f"reaction minus pull {r - p:.2f} s   [target: < 2 s + pull]"
        )

    # -- (3) log throughput --------------------------------------------------------------------

    def log_throughput(self, seconds: int) -> None:
        env_file = self.new_run(self.a.tag)
        run_id = env_file.stem
        # Numbered lines as fast as the container can print, for `seconds` (busybox seq and timeout).
        # stderr is dropped so sh's "Terminated" (seq killed by timeout) does not join the numbered lines.
        script = f"exec 2>/dev/null; timeout {seconds} seq 1 1000000000; exit 0"
        argv = [str(Path(sys.executable).with_name("run-manager"))]
        argv += manager_args(env_file, repository=REPOSITORY, script=script)
        proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=self.environ, start_new_session=True
        )
        assert proc.stdout is not None and proc.stderr is not None
        ours = Count(proc.stdout, "run-manager")
        err = io.StringIO()
        stderr = proc.stderr
        err_thread = threading.Thread(target=lambda: err.write(stderr.read().decode()), daemon=True)
        err_thread.start()
        peak_thread = threading.Thread(target=self._peak_loop, args=(proc, "log throughput"), daemon=True)
        peak_thread.start()
        container_id = self._container_of(run_id, proc)
        logs = subprocess.Popen([DOCKER, "-H", self.host, "logs", "-f", container_id], stdout=subprocess.PIPE)
        assert logs.stdout is not None
        theirs = Count(logs.stdout, "docker logs -f")
        code = proc.wait(timeout=seconds + 120)
        logs.wait(timeout=120)
        ours.thread.join()
        theirs.thread.join()
        err_thread.join()
        assert code == 0, err.getvalue()
        self.cleanup(env_file)
        for count in (ours, theirs):
            print(f"    {count.name}: {count.describe()}")
        ratio = ours.rate / theirs.rate
        lost = theirs.lines - ours.lines + ours.missing
        print(
            f"(3) [{self.engine}] log throughput over {seconds} s: run-manager {ours.rate:,.0f} lines/s vs "
            f"docker logs -f {theirs.rate:,.0f} lines/s, ratio {ratio:.2f}; lines lost by run-manager {lost} "
            f"(gaps: {ours.gaps})   [target: ratio >= 0.8, 0 lost]"
        )

    def _container_of(self, run_id: str, proc: subprocess.Popen[bytes]) -> str:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            # The low-level list: containers.list() inspects each match, which can race a removal (404).
            found = self.client.api.containers(all=True, filters={"label": f"{LABEL_RUN_ID}={run_id}"})
            if found:
                return str(found[0]["Id"])
            time.sleep(0.01)
        raise RuntimeError(f"run-manager started no container for {run_id} (exit {proc.poll()})")

    def _peak_loop(self, proc: subprocess.Popen[bytes], label: str) -> None:
        while proc.poll() is None:
            self.peak.sample(proc.pid, label)
            time.sleep(0.2)


class Count:
    """Reads numbered lines from a pipe: counts them, checks that none is missing, times first and last."""

    def __init__(self, pipe: IO[bytes], name: str) -> None:
        self.name = name
        self.lines = 0
        self.gaps = 0
        self.missing = 0
        self.partial_tail = False
        self.first = self.last = 0.0
        self.thread = threading.Thread(target=self._read, args=(pipe,), daemon=True)
        self.thread.start()

    def _read(self, pipe: IO[bytes]) -> None:
        expected = 1
        cut: bytes | None = None  # a line that was a prefix of the expected number (only the last may be)
        for line in pipe:
            now = time.monotonic()
            if not self.lines:
                self.first = now
            self.last = now
            self.lines += 1
            if cut is not None:
                self.gaps += 1
                cut = None
            text = line.rstrip(b"\n")
            want = str(expected).encode()
            if text == want:
                expected += 1
            elif text.isdigit() and int(text) > expected:  # lines missing: count them, resynchronise
                self.gaps += 1
                self.missing += int(text) - expected
                expected = int(text) + 1
            elif want.startswith(text):
                cut = text
                expected += 1
            else:
                self.gaps += 1
        self.partial_tail = cut is not None

    @property
    def rate(self) -> float:
        return self.lines / (self.last - self.first) if self.last > self.first else 0.0

    def describe(self) -> str:
        tail = " (last line cut short by the kill, as printed)" if self.partial_tail else ""
        return (
            f"{self.lines:,} lines in {self.last - self.first:.2f} s from first to last = {self.rate:,.0f} "
            f"lines/s, {self.gaps} gaps ({self.missing:,} numbers missing){tail}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=7, help="samples for figures 1 and 2")
    parser.add_argument("--log-seconds", type=int, default=10)
    parser.add_argument(
        "--only",
        choices=("start", "version", "logs"),
        help="run one figure (plus peak RSS over it): start overhead, version reaction, or log throughput",
    )
    parser.add_argument(
        "--engine",
        choices=("docker", "podman", "both"),
        default="docker",
        help="the engine the main job drives: DOCKER_HOST's, the private Podman service, or both in turn",
    )
    args = parser.parse_args()
    client = docker.from_env(timeout=120)
    engines: list[tuple[str, docker.DockerClient, str | None]] = []
    if args.engine in ("docker", "both"):
        engines.append(("docker", client, None))
    if args.engine in ("podman", "both"):
        podman_host = os.environ.get("PSYCHE_PODMAN_HOST", "unix:///tmp/psyche-podman/podman.sock")
        engines.append(("podman", docker.DockerClient(base_url=podman_host, version="1.41"), podman_host))
    home = Path(tempfile.mkdtemp(prefix="bench-mainjob-home-"))
    with images(client) as (a, b), chain(home) as world:
        for name, engine_client, host in engines:
            bench = Bench(world, engine_client, a, b, name, host)
            try:
                if args.only in (None, "start"):
                    bench.start_overhead(args.samples)
                if args.only in (None, "version"):
                    bench.version_reaction(args.samples)
                if args.only in (None, "logs"):
                    bench.log_throughput(args.log_seconds)
            finally:
                if engine_client is not client:  # the images pulled into Podman
                    for image in (a, b):
                        with contextlib.suppress(docker.errors.NotFound):
                            engine_client.images.remove(image.ref, force=True)
                    engine_client.close()
            phases = ", ".join(f"{label} {kb / 1024:.1f}" for label, kb in bench.peak.by_label.items())
            print(
                f"(4) [{name}] peak RSS of run-manager (VmHWM, max over every run above): "
                f"{bench.peak.kb / 1024:.1f} MiB ({bench.peak.where}); per phase, MiB: {phases}   "
                "[target: < 80 MB]"
            )
    client.close()


if __name__ == "__main__":
    main()
