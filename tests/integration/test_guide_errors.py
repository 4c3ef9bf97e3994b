"""docs/guide.md's Troubleshooting, reproduced: every `Error:` entry is driven for real and compared.

One table per tier, each keyed by the start of a guide entry, at the cheapest tier that makes the program
print that line for real:

- ``CLI``: the click group in-process (settings, .env, wallet, dead loopback ports, a missing engine);
- ``CHAIN``: the same against an in-process local chain seeded with the demo world (no Docker);
- ``MAIN_JOB``: `run-manager --env-file ...` as a subprocess on the real Docker engine and loopback
  registry, against a `run-manager localnet` subprocess (the main job asks the engine first, so even its
  chain errors need one).

The last `Error:` line printed (the one the program exits on) must match the entry (its `<…>` parts match
any text). An entry with no reproduction, or a reproduction whose entry is gone, fails
`test_every_entry_has_exactly_one_reproduction`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from solders.keypair import Keypair

from psyche.chain.programs import DEFAULT_PROGRAM_IDS
from psyche.manager import cli as cli_module
from tests.support.commands import write_keypair
from tests.support.engine import SESSION_ID, PushedImage
from tests.support.guide import ENTRIES, pattern
from tests.support.localnet import DemoLocalnet, demo_localnet
from tests.support.mainjob import Job, Manager, job, versions, world, write_env
from tests.support.net import dead_url, listening_port

__all__ = ["job", "versions", "world"]  # fixtures used by name

# Entries whose reproductions live in another module (the Docker engine's own refusals, driven there
# through the main job against the real engine and a stand-in one).
REPRODUCED_ELSEWHERE: dict[str, str] = {
    "Docker run failed: ": "tests/integration/test_guide_docker_errors.py",
    "Docker engine <version> accepts API ": "tests/integration/test_guide_docker_errors.py",
    # Exact lines asserted where the situation is built: a run created at another treasurer index, a
    # worst-case transaction, the run-down service's refusals and a download that keeps failing.
    "run <id> has no treasurer at index": "tests/integration/test_commands_limits.py",
    "transaction too large": "tests/unit/test_transaction_limits.py",
    "the run-down service refused the signature": "tests/integration/test_rundown.py",
    "downloading <file> failed after": "tests/integration/test_rundown.py",
    "<path> already exists; pass --overwrite": "tests/unit/test_rundown.py",
}

# Entries no test drives the CLI into yet (each needs an engine on another machine, or a host whose
# /dev/shm is not a tmpfs); the unit tests in tests/unit/test_runtime.py cover the decision. Listed so
# the gap is explicit: test_every_entry_has_exactly_one_reproduction fails on any other missing entry.
NOT_YET_REPRODUCED: tuple[str, ...] = (
    "the wallet key file needs the Docker engine on this machine",
    "no tmpfs for the wallet key file",
)


def entry_for(prefix: str) -> str:
    [entry] = [e for e in ENTRIES if e.startswith(prefix)]
    return entry


def assert_printed(prefix: str, code: int, stderr: str) -> None:
    """A failure exit, and the last `Error:` line (the one the program exits on; the main job may print an
    `Error: [run-manager] giving up ...` line before it) is the guide's entry starting with ``prefix``."""
    entry = entry_for(prefix)
    errors = [line[len("Error: ") :] for line in stderr.splitlines() if line.startswith("Error: ")]
    assert code != 0 and errors, f"exit {code}, no Error line:\n{stderr}"
    assert pattern(entry).fullmatch(errors[-1]), f"printed: {errors[-1]!r}\nguide:   {entry!r}"


# -- tier 1: the click group in-process ----------------------------------------------------------


@dataclass(frozen=True)
class CliCase:
    """A .env text and a command line (``{env}``, ``{tmp}``, ``{key}``, ``{dead}``, ``{dead2}`` filled in),
    run with ``shell`` as the process environment (None removes a variable of the base shell)."""

    env_text: str
    args: list[str]
    shell: dict[str, str | None] = field(default_factory=dict)


_WALLET = "WALLET_PRIVATE_KEY_PATH={key}\n"
CLI: dict[str, CliCase] = {
    "--env-file is required": CliCase("", []),
    "--env-file <path>: no such": CliCase("", ["--env-file", "{tmp}/missing.env"]),
    "Missing required environment variable: RPC": CliCase(
        "RUN_ID=x\n" + _WALLET, ["--env-file", "{env}"], {"RPC": None, "WS_RPC": None}
    ),
    "Missing required environment variable: WS_RPC": CliCase(
        "RPC={dead}\n" + _WALLET, ["--env-file", "{env}"], {"WS_RPC": None}
    ),
    "<name> in <file>:<line>: no '='": CliCase("justaword\n", ["--env-file", "{env}"]),
    "RPC in <file>:<line>: not an http(s) URL": CliCase("RPC=htp://x\n", ["--env-file", "{env}"]),
    "RPC in <file>:<line>: the port": CliCase("RPC=http://x:99999\n", ["--env-file", "{env}"]),
    "RPC_2 in <file>": CliCase("RPC_2=http://x\n", ["--env-file", "{env}"]),
    "RUN_ID in <file>": CliCase("RUN_ID=\n", ["--env-file", "{env}"]),
    "DATA_PARALLELISM in": CliCase("DATA_PARALLELISM=0\n", ["--env-file", "{env}"]),
    "PARALLELISM_AUTO in": CliCase("PARALLELISM_AUTO=maybe\n", ["--env-file", "{env}"]),
    "SCRATCH_DIR in": CliCase("SCRATCH_DIR=rel\n", ["--env-file", "{env}"]),
    "Failed to read wallet file": CliCase(
        "WALLET_PRIVATE_KEY_PATH={tmp}/none.json\n", ["--env-file", "{env}"]
    ),
    "wallet file <path>: JSON key array": CliCase(
        "WALLET_PRIVATE_KEY_PATH={tmp}/bad.json\n", ["--env-file", "{env}"]
    ),
    "unexpected trailing arguments": CliCase(_WALLET, ["--env-file", "{env}", "--", "x"]),
    "Failed to execute docker command": CliCase(
        "RUN_ID=x\n" + _WALLET, ["--env-file", "{env}"], {"DOCKER_HOST": "unix://{tmp}/no-engine.sock"}
    ),
    "--env-file <path>: <reason>; pass a .env": CliCase("#" * (1 << 20) + "\n", ["--env-file", "{env}"]),
    "RPC_02 in <file>": CliCase("RPC_02=http://x\n", ["--env-file", "{env}"]),
    "RAW_WALLET_PRIVATE_KEY in <file>:<line>: <n> characters": CliCase(
        "RAW_WALLET_PRIVATE_KEY=" + "1" * 70_000 + "\n", ["--env-file", "{env}", "show-config", "--wallet"]
    ),
    "RAW_WALLET_PRIVATE_KEY in <file>:<line>: a JSON array nested": CliCase(
        "RAW_WALLET_PRIVATE_KEY=" + "[" * 1000 + "]" * 1000 + "\n",
        ["--env-file", "{env}", "show-config", "--wallet"],
    ),
    "RAW_WALLET_PRIVATE_KEY in <file>:<line>: base58 key": CliCase(
        "RAW_WALLET_PRIVATE_KEY=" + "1" * 100 + "\n", ["--env-file", "{env}", "show-config", "--wallet"]
    ),
    "--ledger <path>: not a directory": CliCase("", ["localnet", "--ledger", "/dev/null"]),
    "--client-version <value> is not": CliCase(
        _WALLET, ["update-config", "--env-file", "{env}", "-r", "x", "--client-version", ""]
    ),
    "all RPC endpoints failed": CliCase(
        "RPC={dead}\nRPC_2={dead2}\nWS_RPC_2=ws://127.0.0.1:9\n",
        ["json-dump-run", "--env-file", "{env}", "-r", "x"],
    ),
}


@pytest.mark.parametrize("prefix", list(CLI), ids=[p[:40] for p in CLI])
def test_cli_entry(prefix: str, tmp_path: Path) -> None:
    case = CLI[prefix]
    (tmp_path / "bad.json").write_text("[1,2,3]")
    dead = dead_url()
    dead2 = next(url for url in iter(dead_url, None) if url != dead)  # two endpoints, not one repeated
    values = {
        "tmp": str(tmp_path),
        "env": str(tmp_path / "guide.env"),
        "key": str(write_keypair(tmp_path, "id", Keypair())),
        "dead": dead,
        "dead2": dead2,
    }
    (tmp_path / "guide.env").write_text(case.env_text.format(**values))
    shell: dict[str, str | None] = {
        "NO_COLOR": "1",
        "HOME": str(tmp_path),
        "RPC": values["dead"],
        "WS_RPC": "ws://127.0.0.1:9",
        **case.shell,
    }
    environ = {k: v.format(**values) for k, v in shell.items() if v is not None}
    result = CliRunner().invoke(cli_module.cli, [a.format(**values) for a in case.args], obj=environ)
    assert_printed(prefix, result.exit_code, result.stderr)


# -- tier 2: an in-process local chain with the demo world (no Docker) ----------------------------


@pytest.fixture(scope="module")
def demo_net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoLocalnet]:
    with demo_localnet(tmp_path_factory.mktemp("guide-demo")) as net:
        yield net


def _chain_cli(net: DemoLocalnet, home: Path, *args: str) -> Result:
    """A command with the demo's .env (its RPC, its participant wallet), as `run-manager localnet --demo`
    tells users to run it."""
    environ = {"NO_COLOR": "1", "HOME": str(home)}
    argv = [args[0], "--env-file", str(net.demo_dir / ".env"), *args[1:]]
    return CliRunner().invoke(cli_module.cli, argv, obj=environ)


def _every_run_unreadable(net: DemoLocalnet, home: Path) -> Result:
    """Zero the data of every run's coordinator account (as corrupted data would read), list, restore."""
    coordinators = [h.account for h in (net.demo.open_run, net.demo.private_run, net.demo.rewards_run)]
    accounts = net.chain.ledger.accounts

    def corrupt() -> list[bytes]:
        saved = [bytes(accounts[a].data) for a in coordinators]
        for address in coordinators:
            accounts[address].data[:] = bytes(len(accounts[address].data))
        return saved

    def restore(saved: list[bytes]) -> None:
        for address, data in zip(coordinators, saved, strict=True):
            accounts[address].data[:] = data

    saved = net.on_chain_thread(corrupt)
    try:
        return _chain_cli(net, home, "list-runs", "--all")
    finally:
        net.on_chain_thread(lambda: restore(saved))


CHAIN: dict[str, Callable[[DemoLocalnet, Path], Result]] = {
    "RPC error: failed to get account": lambda net, home: _chain_cli(
        net, home, "json-dump-run", "-r", "no-such-run"
    ),
    "none of the <n> run account(s)": _every_run_unreadable,
    "run '<run id>' has no treasurer": lambda net, home: _chain_cli(
        net, home, "treasurer-claim-rewards", "-r", "demo-open"
    ),
    "<pubkey> cannot join run": lambda net, home: _chain_cli(
        net, home, "can-join", "-r", "demo-private", "--address", str(Keypair().pubkey())
    ),
}


@pytest.mark.parametrize("prefix", list(CHAIN), ids=[p[:40] for p in CHAIN])
def test_chain_entry(prefix: str, demo_net: DemoLocalnet, tmp_path: Path) -> None:
    result = CHAIN[prefix](demo_net, tmp_path)
    assert_printed(prefix, result.exit_code, result.stderr)


def test_account_error_names_the_endpoint_without_its_api_key(demo_net: DemoLocalnet, tmp_path: Path) -> None:
    keyed = f"{demo_net.rpc_url}/?api-key=sekret-0123456789"
    env = tmp_path / "keyed.env"
    env.write_text(f"RPC={keyed}\nWS_RPC={demo_net.ws_url}\n")
    result = CliRunner().invoke(
        cli_module.cli,
        ["json-dump-run", "--env-file", str(env), "-r", "no-such-run"],
        obj={"NO_COLOR": "1", "HOME": str(tmp_path)},
    )
    assert result.exit_code == 1
    assert f"(run 'no-such-run', endpoint {demo_net.rpc_url}/?api-key=***): " in result.stderr
    assert "sekret" not in result.output


def test_list_runs_counts_unreadable_runs_and_lists_the_rest(demo_net: DemoLocalnet, tmp_path: Path) -> None:
    accounts = demo_net.chain.ledger.accounts
    broken = demo_net.demo.private_run.account

    def corrupt() -> bytes:
        saved = bytes(accounts[broken].data)
        accounts[broken].data[:8] = bytes(8)  # the discriminator
        return saved

    saved = demo_net.on_chain_thread(corrupt)
    try:
        result = _chain_cli(demo_net, tmp_path, "list-runs", "--all")
    finally:
        demo_net.on_chain_thread(lambda: accounts[broken].data.__setitem__(slice(None), saved))
    assert result.exit_code == 0, result.output
    [warning] = [line for line in result.stderr.splitlines() if line.startswith("Warning: ")]
    assert warning.startswith(
        f"Warning: 1 run account(s) could not be read and are not listed (first: {broken}: "
    )
    listed = result.stdout
    assert "demo-open" in listed and "demo-rewards" in listed and "demo-private" not in listed


# -- tier 3: the main job on the real Docker engine and registry -----------------------------------


@dataclass(frozen=True)
class MainJob:
    """What a main-job reproduction may use: a fresh run id and wallet, image A, a port someone holds."""

    job: Job
    image: PushedImage
    busy_port: int

    def discover_env(self) -> Path:
        """A .env without RUN_ID: the main job discovers a run."""
        net = self.job.world.net
        env = self.job.directory / "discover.env"
        return write_env(env, rpc=net.rpc_url, ws=net.ws_url, wallet=self.job.wallet.path, run_id=None)


def _not_authorized(m: MainJob) -> Manager:
    m.job.world.create_run(m.job.run_id, m.image.tag, join_authority=str(Keypair().pubkey()))  # none granted
    return m.job.start()


def _no_runs(m: MainJob) -> Manager:
    empty_program = str(DEFAULT_PROGRAM_IDS.authorizer)  # owns no coordinator instances
    return m.job.start(env_file=m.discover_env(), extra_args=["--coordinator-program-id", empty_program])


def _no_joinable_runs(m: MainJob) -> Manager:
    m.job.world.create_run(m.job.run_id, m.image.tag)
    nobody = str(Keypair().pubkey())  # no run has this join authority
    return m.job.start(env_file=m.discover_env(), extra_args=["--authorizer", nobody])


def _no_gpus(m: MainJob) -> Manager:
    assert m.job.docker is not None
    if "nvidia" in m.job.docker.info().get("Runtimes", {}):
        pytest.skip("this engine has the NVIDIA runtime: the error path cannot be shown here")
    m.job.world.create_run(m.job.run_id, m.image.tag)
    return m.job.start(gpus=True)


def _pull_fails(m: MainJob) -> Manager:
    m.job.world.create_run(m.job.run_id, f"absent-{SESSION_ID}")  # never pushed: the registry says so
    return m.job.start()


def _local_image_absent(m: MainJob) -> Manager:
    m.job.world.create_run(m.job.run_id, f"absent-{SESSION_ID}")
    return m.job.start(extra_args=["--local"])


def _bad_client_version(m: MainJob) -> Manager:
    m.job.world.create_run_with_unchecked_version(m.job.run_id, f"{m.image.tag} ")  # whitespace is not a tag
    return m.job.start()


def _crash_loop(m: MainJob) -> Manager:
    m.job.world.create_run(m.job.run_id, m.image.tag)
    return m.job.start("echo boom; exit 3")  # RUN_MANAGER_MAX_RESTARTS=2: three quick failures


def _exit_10_loop(m: MainJob) -> Manager:
    m.job.world.create_run(m.job.run_id, m.image.tag)
    return m.job.start("echo 'client: version mismatch'; exit 10")


def _metrics_port_taken(m: MainJob) -> Manager:
    m.job.world.create_run(m.job.run_id, m.image.tag)
    return m.job.start(extra_args=["--metrics-port", str(m.busy_port)])


MAIN_JOB: dict[str, Callable[[MainJob], Manager]] = {
    "<pubkey> is not authorized to join run": _not_authorized,
    "No runs found on coordinator program": _no_runs,
    "No joinable runs found for user": _no_joinable_runs,
    "the Docker engine cannot give the container GPUs": _no_gpus,
    "pulling <image> failed": _pull_fails,
    "local image <image> not found": _local_image_absent,
    "the run's client_version <value> is not a Docker tag": _bad_client_version,
    "the client kept failing": _crash_loop,
    "the client exited 10 (version mismatch)": _exit_10_loop,
    "--metrics-port <port>: cannot listen": _metrics_port_taken,
}


@pytest.fixture
def busy_port() -> Iterator[int]:
    with listening_port() as port:
        yield port


@pytest.mark.parametrize("prefix", list(MAIN_JOB), ids=[p[:40] for p in MAIN_JOB])
def test_main_job_entry(
    prefix: str, job: Job, versions: tuple[PushedImage, PushedImage], busy_port: int
) -> None:
    manager = MAIN_JOB[prefix](MainJob(job, versions[0], busy_port))
    code = manager.wait(90)
    assert_printed(prefix, code, manager.err.text)
    assert job.containers() == []
    job.wallet.assert_absent(manager.out.text, manager.err.text)


# -- the table is complete -------------------------------------------------------------------------


def test_every_entry_has_exactly_one_reproduction() -> None:
    prefixes = [*CLI, *CHAIN, *MAIN_JOB, *REPRODUCED_ELSEWHERE, *NOT_YET_REPRODUCED]
    assert len(prefixes) == len(set(prefixes))
    missing = [e for e in ENTRIES if not any(e.startswith(p) for p in prefixes)]
    assert missing == [], f"guide entries without a reproduction: {missing}"
    for entry in ENTRIES:
        owners = [p for p in prefixes if entry.startswith(p)]
        assert len(owners) == 1, f"{entry!r} is claimed by {owners}"
    in_this_guide = [p for p in [*CLI, *CHAIN, *MAIN_JOB] if not any(e.startswith(p) for e in ENTRIES)]
    assert in_this_guide == [], f"reproductions of entries the guide no longer has: {in_this_guide}"
    assert len(ENTRIES) >= 25


def test_the_pattern_of_an_entry_rejects_other_text() -> None:
    entry = entry_for("the client kept failing")
    assert pattern(entry).fullmatch(
        "the client kept failing: exit code 3, 3 times in a row, each within 30 s of starting"
    )
    assert not pattern(entry).fullmatch("the client failed: exit code 3")
