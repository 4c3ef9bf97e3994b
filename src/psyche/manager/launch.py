"""What the supervisor is told up front: the container launch settings and the restart policy (pure)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from psyche.backoff import Backoff
from psyche.env_contract import ClientEnvVars
from psyche.manager.images import DEFAULT_LOCAL_REPOSITORY, DEFAULT_REPOSITORY, ImageRef
from psyche.manager.runtime import ContainerSpec

VERSION_MISMATCH_EXIT = 10
LABEL_MANAGED = "io.psyche.run-manager"
LABEL_INSTANCE = "io.psyche.run-manager.instance"
LABEL_RUN_ID = "io.psyche.run-manager.run-id"
LABEL_CLIENT_VERSION = "io.psyche.run-manager.client-version"
LABEL_WALLET = "io.psyche.run-manager.wallet"
# The manager owns restarts: it tells the reference image's entrypoint to run the client once instead of
# looping 5 times itself (psyche.client.entrypoint.RUN_ONCE_ENV; upstream images ignore it).
RUN_ONCE_ENV = ClientEnvVars.RUN_ONCE

# How the wallet key reaches the client (--wallet-key-via, docs/supervisor.md). "env": RAW_WALLET_PRIVATE_KEY
# in the container's environment (what upstream images expect; docker inspect shows it). "file": a read-only
# file on a tmpfs mount and WALLET_PRIVATE_KEY_PATH naming it (the reference client reads either). "auto":
# "file" for an image that declares it can (this label, set by scripts/build-client-image), else "env".
KeyVia = Literal["auto", "file", "env"]
KEY_VIA_CHOICES: tuple[KeyVia, ...] = ("auto", "file", "env")
KEY_FILE_LABEL = "psyche.client.key-file"
KEY_FILE_TARGET = "/run/psyche/wallet-key"
_RAW_KEY = ClientEnvVars.RAW_WALLET_PRIVATE_KEY
_KEY_PATH = ClientEnvVars.WALLET_PRIVATE_KEY_PATH


def key_delivery(via: KeyVia, image_labels: Mapping[str, str]) -> Literal["file", "env"]:
    """``via`` resolved for one image: ``auto`` is ``file`` when the image has ``KEY_FILE_LABEL=1``."""
    if via != "auto":
        return via
    return "file" if image_labels.get(KEY_FILE_LABEL, "").strip() == "1" else "env"


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """When to restart, how long to wait, and when to give up (defaults follow the reference entrypoint)."""

    max_restarts: int = 5  # restarts after consecutive quick failures; the next failure gives up
    healthy_after: float = 120.0  # a client that ran this long resets the failure counters
    backoff_base: float = 5.0
    backoff_cap: float = 60.0
    max_version_retries: int = 5  # exit-10 restarts while the on-chain client_version stays the same
    pull_attempts: int = 3
    pull_backoff: float = 2.0
    stop_grace: float = 10.0  # SIGTERM -> SIGKILL
    log_drain_timeout: float = 5.0  # after the exit, how long the log streams may stay silent (idle timeout)
    last_lines: int = 40  # client lines kept for the give-up report
    chain_retry_base: float = 1.0  # chain unreachable: retry the read after 1, 2, 4, 8, 10, 10 ... s
    chain_retry_cap: float = 10.0  # the reference's RPC retry cap: a returning chain is seen within 10 s
    # --stall-timeout: a running client that wrote no log line for this long is restarted (a crash for the
    # counters above); None never restarts a quiet client.
    stall_timeout: float | None = None

    @property
    def restart_backoff(self) -> Backoff:
        """Restarts: base, 2*base, 4*base, ... capped (the counters above decide when to stop)."""
        return Backoff(self.backoff_base, self.backoff_cap)

    @property
    def pull_retry(self) -> Backoff:
        """Image pulls: pull_backoff, 2x, 4x ... uncapped, ``pull_attempts`` tries in all."""
        return Backoff(self.pull_backoff, attempts=self.pull_attempts)

    def backoff(self, attempt: int) -> float:
        """Delay before restart ``attempt`` (1-based): base, 2*base, 4*base, ... capped."""
        return self.restart_backoff.delay(attempt)

    def chain_retry(self, attempt: int) -> float:
        """Delay before chain read retry ``attempt`` (1-based) while no endpoint answers."""
        return Backoff(self.chain_retry_base, self.chain_retry_cap).delay(attempt)


@dataclass(frozen=True, slots=True)
class LaunchConfig:
    """What every client container gets, whatever the image. ``env`` holds the wallet key: not in the repr.

    ``env`` is the whole client environment (.env variables, RPC/WS_RPC and fallbacks, AUTHORIZER,
    RAW_WALLET_PRIVATE_KEY, parallelism, NVIDIA_DRIVER_CAPABILITIES, ...); the supervisor adds
    RUN_ID, the CLIENT_VERSION matching the image it runs, and PSYCHE_RUN_ONCE=1 (it owns restarts).
    """

    run_id: str
    env: Mapping[str, str] = field(default_factory=dict, repr=False)
    local: bool = False
    repository: str = DEFAULT_REPOSITORY
    local_repository: str = DEFAULT_LOCAL_REPOSITORY
    gpus: bool = True
    privileged: bool = False
    entrypoint: str | None = None
    command: tuple[str, ...] = ()
    scratch_dir: str | None = None
    shm_size: str = "1g"
    devices: tuple[str, ...] = ()
    timestamps: bool = False
    extra_labels: Mapping[str, str] = field(default_factory=dict)
    instance_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    wallet: str | None = None  # its public key: two wallets on one host may run the same run side by side
    wallet_key_via: KeyVia = "auto"

    def scope_labels(self) -> dict[str, str]:
        """Labels shared by every container any run-manager of this run and wallet starts (orphan search)."""
        labels = {LABEL_MANAGED: "true", LABEL_RUN_ID: self.run_id}
        if self.wallet is not None:
            labels[LABEL_WALLET] = self.wallet
        return labels

    def spec_for(self, image: ImageRef, seq: int, *, key_file: bool = False) -> ContainerSpec:
        """The container spec for ``image``; ``seq`` numbers containers within this instance.

        With ``key_file`` the wallet key leaves the environment: it becomes the read-only file
        ``KEY_FILE_TARGET`` (``ContainerSpec.secret_files``) and WALLET_PRIVATE_KEY_PATH names it.
        """
        safe_run = re.sub(r"[^A-Za-z0-9_.-]", "-", self.run_id)[:32] or "run"
        env = {
            **self.env,
            ClientEnvVars.RUN_ID: self.run_id,
            ClientEnvVars.CLIENT_VERSION: image.client_version,
            RUN_ONCE_ENV: "1",
        }
        secret_files: dict[str, bytes] = {}
        key = env.pop(_RAW_KEY, None) if key_file else None
        if key is not None:
            env[_KEY_PATH] = KEY_FILE_TARGET
            secret_files[KEY_FILE_TARGET] = key.encode()
        return ContainerSpec(
            image=image.reference,
            env=env,
            secret_files=secret_files,
            labels={
                **self.extra_labels,
                **self.scope_labels(),
                LABEL_INSTANCE: self.instance_id,
                LABEL_CLIENT_VERSION: image.client_version,
            },
            gpus=self.gpus,
            privileged=self.privileged,
            entrypoint=self.entrypoint,
            command=self.command,
            scratch_dir=self.scratch_dir,
            shm_size=self.shm_size,
            devices=self.devices,
            name=f"psyche-client-{safe_run}-{self.instance_id[:8]}-{seq}",
        )
