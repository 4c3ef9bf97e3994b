"""The container environment contract: the name of every variable the run-manager sets for the client.

One list for both sides. The run-manager writes these names (manager/mainjob.py ``container_env``,
manager/launch.py ``LaunchConfig.spec_for``, manager/p2p.py); the client reads them (client/env.py,
client/config.py, client/entrypoint.py, p2p/settings.py). Plain strings only, torch- and solders-free:
``run-manager --help`` imports it (through manager/constants.py) and must not pay for either.
tests/unit/test_env_contract.py feeds the manager's container environment to the client's readers.
"""

from __future__ import annotations

from typing import Final


class ClientEnvVars:
    """Names of the variables in the client's environment (the reference contract's section 3.2 and ours).

    The run-manager's own variable names (manager/constants.py ``EnvVars``) extend this class: every
    variable of the contract may also be set in the run-manager's ``.env``, and passes through.
    """

    # The chain: endpoints (backups through ``backup_rpc``/``backup_ws_rpc``), the run and who joins it.
    RPC: Final = "RPC"
    WS_RPC: Final = "WS_RPC"
    RUN_ID: Final = "RUN_ID"
    AUTHORIZER: Final = "AUTHORIZER"  # the grantee of the join authorization
    CLIENT_VERSION: Final = "CLIENT_VERSION"  # the run's client_version the image was chosen for
    RAW_WALLET_PRIVATE_KEY: Final = "RAW_WALLET_PRIVATE_KEY"
    WALLET_PRIVATE_KEY_PATH: Final = "WALLET_PRIVATE_KEY_PATH"
    RAW_IDENTITY_SECRET_KEY: Final = "RAW_IDENTITY_SECRET_KEY"
    IDENTITY_SECRET_KEY_PATH: Final = "IDENTITY_SECRET_KEY_PATH"
    COORDINATOR_PROGRAM_ID: Final = "COORDINATOR_PROGRAM_ID"
    AUTHORIZER_PROGRAM_ID: Final = "AUTHORIZER_PROGRAM_ID"
    TREASURER_PROGRAM_ID: Final = "TREASURER_PROGRAM_ID"

    # Training: the GPUs the container sees and how the client spreads its work over them.
    NVIDIA_DRIVER_CAPABILITIES: Final = "NVIDIA_DRIVER_CAPABILITIES"
    PARALLELISM_AUTO: Final = "PARALLELISM_AUTO"
    DATA_PARALLELISM: Final = "DATA_PARALLELISM"
    TENSOR_PARALLELISM: Final = "TENSOR_PARALLELISM"
    MICRO_BATCH_SIZE: Final = "MICRO_BATCH_SIZE"

    # The client's peer-to-peer endpoint: port and address it binds, the address peers dial, and peers
    # of the run to start from.
    P2P_PORT: Final = "P2P_PORT"
    P2P_BIND: Final = "P2P_BIND"
    P2P_ADVERTISE: Final = "P2P_ADVERTISE"
    P2P_BOOTSTRAP: Final = "P2P_BOOTSTRAP"

    # Ours: the run-manager owns restarts, so it asks the client image's entrypoint for one run instead of
    # its own restart loop (upstream images ignore it).
    RUN_ONCE: Final = "PSYCHE_RUN_ONCE"

    @staticmethod
    def backup_rpc(n: int) -> str:
        """Name of the n-th backup HTTP endpoint variable (n >= 2): ``RPC_2``, ``RPC_3``, ..."""
        return f"{ClientEnvVars.RPC}_{n}"

    @staticmethod
    def backup_ws_rpc(n: int) -> str:
        """Name of the n-th backup WebSocket endpoint variable (n >= 2): ``WS_RPC_2``, ``WS_RPC_3``, ..."""
        return f"{ClientEnvVars.WS_RPC}_{n}"
