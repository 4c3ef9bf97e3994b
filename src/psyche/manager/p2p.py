"""The client's peer-to-peer settings (P2P_PORT, P2P_BIND, P2P_ADVERTISE, P2P_BOOTSTRAP), parsed purely.

The run-manager never opens the P2P port itself: it validates the values once, so a typo stops the start
with one line instead of a client that cannot find its peers, and hands them to the client container
(host networking: the port the client binds is a port of this host). ``doctor`` probes them.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from psyche.manager.constants import EnvVars

DEFAULT_BIND = "0.0.0.0"
EPHEMERAL = 0
# A DNS name as RFC 1123 allows it: dot-separated labels of letters, digits and inner hyphens.
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*\.?")


@dataclass(frozen=True, slots=True)
class HostPort:
    """An address peers dial: a host (name or IP literal, IPv6 without brackets) and maybe a port."""

    host: str
    port: int | None = None

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port is None else f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class P2PSettings:
    """The validated P2P variables; the defaults are the client's own (an ephemeral port on every interface,
    the advertised address worked out by the client, no bootstrap peer)."""

    port: int = EPHEMERAL
    bind: str = DEFAULT_BIND
    advertise: HostPort | None = None
    bootstrap: tuple[HostPort, ...] = ()

    def container_env(self) -> dict[str, str]:
        """The variables in the client's normal form (IPv6 in brackets, no blanks in the list)."""
        env = {EnvVars.P2P_PORT: str(self.port), EnvVars.P2P_BIND: self.bind}
        if self.advertise is not None:
            env[EnvVars.P2P_ADVERTISE] = str(self.advertise)
        if self.bootstrap:
            env[EnvVars.P2P_BOOTSTRAP] = ",".join(str(peer) for peer in self.bootstrap)
        return env


def parse_port(text: str, *, low: int = 0) -> int:
    """A port number from ``low`` to 65535; ValueError says what is wrong (not the value)."""
    stripped = text.strip()
    if not stripped.isascii() or not stripped.isdigit() or not low <= int(stripped) <= 65535:
        raise ValueError(f"not a port number from {low} to 65535")
    return int(stripped)


def parse_bind(text: str) -> str:
    """An IP address to bind (0.0.0.0 or :: for every interface); names are refused: a bind is local."""
    try:
        return str(ipaddress.ip_address(text.strip().strip("[]")))
    except ValueError:
        raise ValueError("not an IP address") from None


def is_host(text: str) -> bool:
    """True for an IP literal or a DNS name."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return _HOSTNAME.fullmatch(text) is not None
    return True


def parse_host_port(text: str, *, port_required: bool) -> HostPort:
    """``host``, ``host:port``, ``[v6]`` or ``[v6]:port``; a bare IPv6 literal is a host without a port."""
    value = text.strip()
    port_text: str | None = None
    if value.startswith("["):
        host, close, rest = value[1:].partition("]")
        if not close or (rest and not rest.startswith(":")):
            raise ValueError("not host or host:port (an IPv6 address goes in brackets: [2001:db8::1]:4100)")
        port_text = rest[1:] if rest else None
        if ":" not in host:
            raise ValueError("brackets are only for IPv6 addresses")
    elif value.count(":") == 1:
        host, _, port_text = value.partition(":")
    else:
        host = value
    if not host or not is_host(host):
        raise ValueError("not a host name or IP address")
    if port_text is None:
        if port_required:
            raise ValueError("no port")
        return HostPort(host)
    return HostPort(host, parse_port(port_text, low=1))


def parse_bootstrap(text: str) -> tuple[HostPort, ...]:
    """A comma list of host:port; blank entries (a trailing comma) are skipped, duplicates dropped."""
    peers: list[HostPort] = []
    for number, entry in enumerate(text.split(","), start=1):
        if not entry.strip():
            continue
        try:
            peer = parse_host_port(entry, port_required=True)
        except ValueError as err:
            raise ValueError(f"entry {number} {entry.strip()!r}: {err}") from None
        if peer not in peers:
            peers.append(peer)
    return tuple(peers)
