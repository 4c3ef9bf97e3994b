"""Every error the project raises on purpose, in one tree rooted at RunManagerError.

    RunManagerError                      exit_code 1 unless a subclass says otherwise
    ├── ConfigError                      a bad .env line, variable, flag or file (names it and the fix)
    ├── WalletError                      the keypair cannot be read or does not hold together
    ├── ChainError
    │   ├── RpcError                     an RPC exchange failed
    │   │   ├── RpcUnavailable           every endpoint failed; lists each with its last error; .transient
    │   │   └── RpcResponseError         the node answered with a JSON-RPC error (an answer, not retried)
    │   ├── AccountNotFound              the address holds no account
    │   ├── AccountDecodeError           the bytes are not the account type we expected
    │   ├── InvalidClientVersion         the run's client_version is not a Docker tag or sha256 digest
    │   ├── TransactionFailed            a transaction was rejected; carries logs and the program error
    │   ├── CoordinatorProgramError      the coordinator logic (chain/logic) refused: custom code 6000 + i
    │   └── CoordinatorPanic             the coordinator program would abort without a custom code
    ├── NotAuthorized                    the wallet may not join the run
    ├── JoinRefused                      authorized, but the run cannot take the key now (can-join)
    ├── RunDownError                     the run-down service refused, or a transfer to/from its URLs failed
    ├── ContainerRuntimeError            the Docker engine refused or is missing
    │   ├── DockerUnavailable            no engine reachable through the SDK
    │   ├── ImagePullFailed              the registry did not give us the image
    │   ├── GpuRuntimeMissing            the engine cannot serve the GPU device request (no NVIDIA toolkit)
    │   └── ClientNotInstalled           process runtime: the installed client is not the run's version
    ├── ClientExited                     the client container ended with a non-zero code
    │   └── VersionMismatch              the client reported exit code 10
    ├── BroadcastRefused                 a peer's result broadcast breaks an acceptance rule; .reason
    ├── PayloadRefused                   a peer's DisTrO payload does not fit the run's model; .reason
    ├── Desync                           an agreed result cannot be had: the client leaves the epoch
    ├── ModelUnavailable                 no peer serves the model a joiner needs
    ├── P2PError                         the peer-to-peer transport
    │   ├── PeerRefused                  bytes from a peer were refused; .reason (a key the node counts)
    │   └── FetchFailed                  no peer delivered a blob or a model; says why, in one line
    └── DataError                        the client cannot read its training data (after the retries)

Foreign exceptions (httpx, websockets, docker) are translated into these once, at the module
that talks to the outside world, with ``raise ... from exc``. Messages never contain secrets.
"""

from __future__ import annotations

from typing import Protocol


class RunManagerError(Exception):
    """Base class: catch this to handle every error the project raises on purpose."""

    exit_code: int = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class ConfigError(RunManagerError):
    """A setting, flag or file is invalid; the message names it, where it came from, and the fix."""


class WalletError(RunManagerError):
    """The wallet keypair cannot be loaded or is inconsistent."""


class ChainError(RunManagerError):
    """Something went wrong talking to, or reading from, the Solana chain."""


class RpcError(ChainError):
    """An RPC exchange failed."""


class RpcUnavailable(RpcError):
    """Every configured endpoint failed; ``failures`` maps each (redacted) endpoint to its last error.

    ``transient``: at least one endpoint failed in a way a later try may not repeat (unreachable, timed out,
    busy, node behind); False when every endpoint refused for good (401/403, wrong path, bad URL).
    """

    def __init__(self, failures: dict[str, str], *, transient: bool = True) -> None:
        self.failures = dict(failures)
        self.transient = transient
        detail = "; ".join(f"{url}: {err}" for url, err in self.failures.items())
        super().__init__(
            f"all RPC endpoints failed: {detail}",
            hint="check RPC/RPC_2/... in your .env, your API key, and that the node is reachable",
        )


class RpcResponseError(RpcError):
    """The node answered with a JSON-RPC error object."""

    def __init__(self, code: int, message: str, data: object = None) -> None:
        self.code = code
        self.rpc_message = message
        self.data = data
        super().__init__(f"RPC error {code}: {message}")


class AccountNotFound(ChainError):
    """No account exists at the address."""

    def __init__(
        self, what: str, address: str, *, message: str | None = None, hint: str | None = None
    ) -> None:
        self.address = address
        super().__init__(message or f"{what} account not found: {address}", hint=hint)


class AccountDecodeError(ChainError):
    """The account bytes do not decode as the expected type (wrong discriminator, size or content)."""


class InvalidClientVersion(ChainError):
    """The run's on-chain client_version is not a valid Docker tag or sha256 digest; refused before Docker."""


class TransactionFailed(ChainError):
    """A transaction was rejected by the node or a program."""

    def __init__(
        self,
        message: str,
        *,
        signature: str | None = None,
        logs: list[str] | None = None,
        program_error: int | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.signature = signature
        self.logs = list(logs or [])
        self.program_error = program_error


class ProgramErrorCode(Protocol):
    """A program's custom error as an enum member (chain/logic/errors.py ``CoordinatorErrorCode``)."""

    @property
    def name(self) -> str: ...

    @property
    def code(self) -> int:
        """The on-chain number (Solana ``InstructionError::Custom``)."""
        ...


class CoordinatorProgramError(ChainError):
    """The coordinator program rejected the instruction with custom error ``code`` (6000 + i) named ``name``.

    Raised by the pure coordinator logic (psyche.chain.logic), which the local chain and the client run.
    """

    def __init__(self, error: ProgramErrorCode) -> None:
        self.error = error
        self.code = error.code
        self.name = error.name
        super().__init__(f"coordinator error {self.code} ({self.name})")


class CoordinatorPanic(ChainError):
    """The real program would panic (Rust assert/unwrap/todo): the transaction fails without a custom code."""


class NotAuthorized(RunManagerError):
    """The wallet is not authorized to join the run."""


class JoinRefused(RunManagerError):
    """The key is authorized but the run cannot take it now (paused, finished, already in the epoch)."""


class RunDownError(RunManagerError):
    """The run-down service refused a request or gave a bad answer, or an upload/download failed."""


class ContainerRuntimeError(RunManagerError):
    """The container engine failed or refused a request."""


class DockerUnavailable(ContainerRuntimeError):
    """No Docker engine can be reached through the SDK."""


class ImagePullFailed(ContainerRuntimeError):
    """Pulling the client image failed."""


class GpuRuntimeMissing(ContainerRuntimeError):
    """The engine cannot satisfy the GPU device request (no NVIDIA Container Toolkit)."""


class ClientNotInstalled(ContainerRuntimeError):
    """The process runtime's installed psyche-run-manager[client] is not the version the run wants."""


class ClientExited(RunManagerError):
    """The client container exited with a non-zero code."""

    def __init__(self, code: int, message: str | None = None) -> None:
        self.code = code
        super().__init__(message or f"client container exited with code {code}")


class VersionMismatch(ClientExited):
    """The client exited with code 10: its version differs from the run's client_version."""

    exit_code = 10

    def __init__(self, message: str | None = None) -> None:
        super().__init__(10, message or "client version differs from the run's client_version (exit code 10)")


class BroadcastRefused(RunManagerError):
    """A peer's broadcast breaks an acceptance rule (client/exchange.py); ``reason``: a fixed phrase."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        super().__init__(f"broadcast refused: {reason}" + (f" ({detail})" if detail else ""))


class DataError(RunManagerError):
    """Training data could not be read (HTTP failures after retries, short or bad token files)."""


class PayloadRefused(RunManagerError):
    """A payload that is not a valid result for this run's model; ``reason`` is a short stable key (for the
    refused counters), the message says what was wrong."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"payload refused: {reason}" + (f" ({detail})" if detail else ""))
        self.reason = reason


class Desync(RunManagerError):
    """An agreed result cannot be had: applying anything else would leave us off our peers' model."""


class ModelUnavailable(RunManagerError):
    """No peer serves the model a joiner needs."""


class P2PError(RunManagerError):
    """Base of every peer-to-peer transport error."""


class PeerRefused(P2PError):
    """A message, record, manifest or blob from a peer was refused.

    ``reason`` is a short key ("bad-signature", "not-allowed", "too-large", "malformed", "hash-mismatch",
    ...) that the node counts in its stats; ``detail`` says more, never quoting the peer's bytes at length.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


class FetchFailed(P2PError):
    """No peer delivered what was asked for; the message lists what each attempt got, in one line."""
