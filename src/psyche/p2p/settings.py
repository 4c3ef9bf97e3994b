"""The node's network settings: P2P_* from an environ mapping into a frozen P2PSettings, and the
advertised-address rule (docs/configuration.md "P2P")."""

from __future__ import annotations

import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from psyche.env_contract import ClientEnvVars
from psyche.errors import ConfigError
from psyche.p2p.wire import parse_address


class P2PEnvVars:
    """Every variable the transport reads."""

    P2P_PORT: Final = ClientEnvVars.P2P_PORT
    P2P_BIND: Final = ClientEnvVars.P2P_BIND
    P2P_ADVERTISE: Final = ClientEnvVars.P2P_ADVERTISE
    P2P_BOOTSTRAP: Final = ClientEnvVars.P2P_BOOTSTRAP


WILDCARDS: Final = frozenset({"", "0.0.0.0", "::", "[::]"})
FALLBACK_HOST: Final = "127.0.0.1"


@dataclass(frozen=True, slots=True)
class P2PSettings:
    """``port`` 0 = ephemeral; ``advertise`` None = worked out after binding (see ``resolve_advertise``)."""

    port: int = 0
    bind: str = "0.0.0.0"
    advertise: str | None = None
    bootstrap: tuple[tuple[str, int], ...] = ()


def load_p2p_settings(environ: Mapping[str, str]) -> P2PSettings:
    """P2PSettings from ``environ``; ConfigError naming the variable on bad input."""
    port_text = environ.get(P2PEnvVars.P2P_PORT, "").strip()
    port = 0
    if port_text:
        if not port_text.isdigit() or int(port_text) > 65535:
            raise ConfigError(f"P2P_PORT: not a port number (0-65535): {port_text[:32]!r}")
        port = int(port_text)
    bind = environ.get(P2PEnvVars.P2P_BIND, "").strip() or "0.0.0.0"
    if bind.startswith("[") and bind.endswith("]"):
        bind = bind[1:-1]
    try:
        parse_address(bind, 1)
    except ValueError as exc:
        raise ConfigError(f"P2P_BIND: not a host or address: {bind[:64]!r}") from exc
    advertise = environ.get(P2PEnvVars.P2P_ADVERTISE, "").strip() or None
    if advertise is not None:
        try:
            host, _ = parse_address(advertise, 1)
        except ValueError as exc:
            raise ConfigError(f"P2P_ADVERTISE: expected host or host:port: {exc}") from exc
        if host in WILDCARDS:
            raise ConfigError(f"P2P_ADVERTISE: {host} is not an address peers can dial")
    bootstrap = []
    for item in environ.get(P2PEnvVars.P2P_BOOTSTRAP, "").split(","):
        if item.strip():
            try:
                bootstrap.append(parse_address(item))
            except ValueError as exc:
                raise ConfigError(f"P2P_BOOTSTRAP: expected a comma list of host:port: {exc}") from exc
    return P2PSettings(port, bind, advertise, tuple(bootstrap))


def route_address(target: str) -> str | None:
    """This host's local address on the route towards ``target`` (a UDP connect sends no packet)."""
    try:
        infos = socket.getaddrinfo(target, 9, type=socket.SOCK_DGRAM)
        family, _, _, _, sockaddr = infos[0]
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.connect(sockaddr)
            host = sock.getsockname()[0]
    except (OSError, IndexError):
        return None
    return str(host)


def resolve_advertise(
    advertise: str | None, bind_host: str, bound_port: int, towards: Sequence[str]
) -> tuple[str, int]:
    """The (host, port) peers should dial.

    ``advertise`` (host or host:port) when given; else the bind address when it is not a wildcard; else
    this host's address on the route to the first of ``towards`` (bootstrap hosts, then the RPC host)
    that has one; else 127.0.0.1. The port is the bound one unless ``advertise`` names another (a
    forwarded port).
    """
    if advertise:
        return parse_address(advertise, bound_port)
    if bind_host not in WILDCARDS:
        return bind_host, bound_port
    for target in towards:
        host = route_address(target)
        if host and host not in WILDCARDS:
            return host, bound_port
    return FALLBACK_HOST, bound_port
