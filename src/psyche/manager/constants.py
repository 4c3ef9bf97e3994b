"""Every environment variable name the run-manager reads, and every default, in one place."""

from __future__ import annotations

from typing import Final

from psyche.env_contract import ClientEnvVars

# Plain strings only: this module is imported by `run-manager --help`, which must not pay for solders.


class EnvVars:
    """Names of the variables read from the `.env` file and the process environment.

    The names the client reads too are the container environment contract's (``ClientEnvVars``), never
    spelled again here; the shell's variables are read only when named here (settings.py ``_KNOWN``).
    """

    RPC: Final = ClientEnvVars.RPC
    WS_RPC: Final = ClientEnvVars.WS_RPC
    # Backups are RPC_2/WS_RPC_2, RPC_3/WS_RPC_3, ... (see backup_rpc / backup_ws_rpc).
    RPC_BACKUP_PREFIX: Final = "RPC_"
    WS_RPC_BACKUP_PREFIX: Final = "WS_RPC_"

    RUN_ID: Final = ClientEnvVars.RUN_ID
    AUTHORIZER: Final = ClientEnvVars.AUTHORIZER

    WALLET_PATH: Final = "WALLET_PATH"
    WALLET_PRIVATE_KEY_PATH: Final = ClientEnvVars.WALLET_PRIVATE_KEY_PATH
    RAW_WALLET_PRIVATE_KEY: Final = ClientEnvVars.RAW_WALLET_PRIVATE_KEY

    NVIDIA_DRIVER_CAPABILITIES: Final = ClientEnvVars.NVIDIA_DRIVER_CAPABILITIES
    PARALLELISM_AUTO: Final = ClientEnvVars.PARALLELISM_AUTO
    DATA_PARALLELISM: Final = ClientEnvVars.DATA_PARALLELISM
    TENSOR_PARALLELISM: Final = ClientEnvVars.TENSOR_PARALLELISM
    MICRO_BATCH_SIZE: Final = ClientEnvVars.MICRO_BATCH_SIZE
    SCRATCH_DIR: Final = "SCRATCH_DIR"
    # The client's peer-to-peer endpoint (psyche.manager.p2p).
    P2P_PORT: Final = ClientEnvVars.P2P_PORT
    P2P_BIND: Final = ClientEnvVars.P2P_BIND
    P2P_ADVERTISE: Final = ClientEnvVars.P2P_ADVERTISE
    P2P_BOOTSTRAP: Final = ClientEnvVars.P2P_BOOTSTRAP

    COORDINATOR_PROGRAM_ID: Final = ClientEnvVars.COORDINATOR_PROGRAM_ID
    AUTHORIZER_PROGRAM_ID: Final = ClientEnvVars.AUTHORIZER_PROGRAM_ID
    TREASURER_PROGRAM_ID: Final = ClientEnvVars.TREASURER_PROGRAM_ID

    backup_rpc = staticmethod(ClientEnvVars.backup_rpc)
    backup_ws_rpc = staticmethod(ClientEnvVars.backup_ws_rpc)


class AppEnvVars:
    """Variables that steer the run-manager process itself; never read from the `.env` file."""

    ENV_FILE: Final = "RUN_MANAGER_ENV_FILE"
    IMAGE_REPOSITORY: Final = "RUN_MANAGER_IMAGE_REPOSITORY"
    METRICS_PORT: Final = "RUN_MANAGER_METRICS_PORT"
    DEBUG: Final = "RUN_MANAGER_DEBUG"
    # Restart policy overrides (docs/supervisor.md): tests and impatient operators shorten the waits.
    RESTART_BACKOFF: Final = "RUN_MANAGER_RESTART_BACKOFF"
    MAX_RESTARTS: Final = "RUN_MANAGER_MAX_RESTARTS"
    STALL_TIMEOUT: Final = "RUN_MANAGER_STALL_TIMEOUT"  # --stall-timeout
    WALLET_KEY_VIA: Final = "RUN_MANAGER_WALLET_KEY_VIA"  # --wallet-key-via
    RUNTIME: Final = "RUN_MANAGER_RUNTIME"  # --runtime docker|process
    NO_COLOR: Final = "NO_COLOR"
    CI: Final = "CI"
    HOME: Final = "HOME"


# RPC and WS_RPC have no default: a missing one is an error (docs/configuration.md); only the .env that
# `run-manager localnet --demo` writes names the local chain, explicitly.

# The spec's program IDs (onchain.md); each can be overridden by the variable of the same name.
DEFAULT_COORDINATOR_PROGRAM_ID: Final = "4SHugWqSXwKE5fqDchkJcPEqnoZE22VYKtSTVm7axbT7"
DEFAULT_AUTHORIZER_PROGRAM_ID: Final = "PsyAUmhpmiUouWsnJdNGFSX8vZ6rWjXjgDPHsgqPGyw"
DEFAULT_TREASURER_PROGRAM_ID: Final = "EnU7DRx5az5YWxaxgqEGbXSYtudcfnjXewyBRRZCjJPw"

# The run-down service's base URL (download-results, upload-data), as in the reference.
DEFAULT_RUN_DOWN_SERVICE_URL: Final = "https://run-down.nousresearch.com/v1"

# Relative to HOME; the seed's docs promise this default, the reference code never had it.
DEFAULT_WALLET_RELATIVE: Final = ".config/solana/id.json"

# Variables whose values are secrets: never echoed in messages, describe() or logs.
SECRET_VARS: Final = frozenset({EnvVars.RAW_WALLET_PRIVATE_KEY})
# Other names that look secret (HF_TOKEN, WANDB_API_KEY, ...) are masked in describe() as well.
SECRET_NAME_MARKERS: Final = ("KEY", "TOKEN", "SECRET", "PASSWORD", "CREDENTIAL")


def is_secret_name(name: str) -> bool:
    """True when a variable's value must never be shown."""
    upper = name.upper()
    if name in SECRET_VARS:
        return True
    # A *_PATH or *_FILE names where the secret lives, not the secret itself.
    if upper.endswith(("_PATH", "_FILE", "_DIR")):
        return False
    return any(marker in upper for marker in SECRET_NAME_MARKERS)
