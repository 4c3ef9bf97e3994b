"""The doctor's P2P checks: the client's port is free, its advertised address leads to this host, and the
bootstrap peers answer. Only this host and the configured peers are touched (no outside service)."""

from __future__ import annotations

import errno
import ipaddress
import socket
from typing import TYPE_CHECKING, Protocol

from psyche.hosts import is_loopback
from psyche.manager.constants import EnvVars
from psyche.manager.doctor_report import Check, Status
from psyche.manager.p2p import HostPort

if TYPE_CHECKING:
    from psyche.manager.settings import Settings

PEER_TIMEOUT = 2.0  # seconds per bootstrap peer, at most (the doctor's --timeout when shorter)
MAX_PEERS = 8  # bootstrap peers dialled; a longer list is not slower to check than this


class P2PProbe(Protocol):
    """The sockets the P2P checks open; each raises OSError as the kernel answers."""

    def bind(self, host: str, port: int) -> None:
        """Bind a TCP listener on (host, port) as the client would, then close it."""

    def resolve(self, host: str) -> list[str]:
        """The IP addresses of a host name (an IP literal is itself)."""

    def connect(self, host: str, port: int, timeout: float) -> None:
        """Open a TCP connection to (host, port) within ``timeout`` seconds, then close it."""

    def reach(self, bind: str, port: int, host: str, target: int, timeout: float) -> None:
        """Listen on (bind, port) and connect to (host, target): does the address lead back to this host?"""

    def route_source(self, host: str, port: int) -> str:
        """This host's address on the route to (host, port), from the kernel's routing table alone."""


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


class SocketProbe:
    """The real P2PProbe: plain TCP sockets, with SO_REUSEADDR like the client's HTTP server."""

    def _listener(self, host: str, port: int) -> socket.socket:
        sock = socket.socket(_family(host), socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(1)
        except OSError:
            sock.close()
            raise
        return sock

    def bind(self, host: str, port: int) -> None:
        """Bind and close at once (SO_REUSEADDR, as the client binds)."""
        self._listener(host, port).close()

    def resolve(self, host: str) -> list[str]:
        """``getaddrinfo``'s addresses in its order, without duplicates; a failed lookup is an OSError."""
        try:
            infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise OSError(exc.errno, exc.strerror) from exc
        return list(dict.fromkeys(str(info[4][0]) for info in infos))

    def connect(self, host: str, port: int, timeout: float) -> None:
        """Connect, then close."""
        with socket.create_connection((host, port), timeout=timeout):
            pass

    def reach(self, bind: str, port: int, host: str, target: int, timeout: float) -> None:
        """Listen on (bind, port), connect to (host, target) and accept: the connection reached this
        listener."""
        with self._listener(bind, port) as listener:
            listener.settimeout(timeout)
            with socket.create_connection((host, target), timeout=timeout):
                accepted, _ = listener.accept()  # the connection came to this listener, not elsewhere
                accepted.close()

    def route_source(self, host: str, port: int) -> str:
        """The source address a UDP connect picks (it only chooses a route: no packet is sent)."""
        # A UDP connect only picks the route and the source address: no packet leaves this host.
        with socket.socket(_family(host), socket.SOCK_DGRAM) as sock:
            sock.connect((host, port))
            return str(sock.getsockname()[0])


def _reason(exc: OSError) -> str:
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out"
    return exc.strerror or type(exc).__name__


def _is_wildcard(host: str) -> bool:
    return ipaddress.ip_address(host).is_unspecified


def _is_local(probe: P2PProbe, address: str) -> bool:
    """An IP is this host's when a socket can bind it (EADDRNOTAVAIL otherwise): no interface listing."""
    try:
        probe.bind(address, 0)
    except OSError:
        return False
    return True


def check_port(settings: Settings, probe: P2PProbe) -> Check:
    """P2P_PORT is free on P2P_BIND (bind and close, as the client will); 0 picks a free port each start."""
    p2p = settings.p2p
    name = "p2p port"
    if p2p.port == 0:
        detail = f"{EnvVars.P2P_PORT} 0 (ephemeral): the client picks a free port on {p2p.bind} at each start"
        return Check(name, Status.OK, detail)
    where = str(HostPort(p2p.bind, p2p.port))
    try:
        probe.bind(p2p.bind, p2p.port)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            fix = (
                f"if your client runs already, that is it; otherwise stop what listens there "
                f"(ss -ltnp 'sport = :{p2p.port}') or choose another {EnvVars.P2P_PORT} "
                f"{settings.where(EnvVars.P2P_PORT)}"
            )
            return Check(name, Status.FAIL, f"{where} is in use", fix)
        if exc.errno == errno.EADDRNOTAVAIL:
            fix = f"set {EnvVars.P2P_BIND} to an address of this host (ip -brief addr), or 0.0.0.0"
            return Check(
                name, Status.FAIL, f"{EnvVars.P2P_BIND} {p2p.bind} is not an address of this host", fix
            )
        fix = f"choose another {EnvVars.P2P_PORT} (ports under 1024 need root)"
        return Check(name, Status.FAIL, f"cannot listen on {where}: {_reason(exc)}", fix)
    return Check(name, Status.OK, f"{where} is free")


def _derived_advertise(settings: Settings, probe: P2PProbe) -> str:
    """What the client advertises without P2P_ADVERTISE (DESIGN: the bind address unless a wildcard, else
    its address toward the first bootstrap peer, else ...); "" when this host cannot tell (no bootstrap)."""
    p2p = settings.p2p
    if not _is_wildcard(p2p.bind):
        return p2p.bind
    if not p2p.bootstrap:
        return ""
    first = p2p.bootstrap[0]
    assert first.port is not None
    for address in _resolved(probe, first.host):
        try:
            return probe.route_source(address, first.port)
        except OSError:
            continue
    return ""


def _on_internet(probe: P2PProbe, host: str) -> bool:
    """A peer with a global (public) address."""
    return any(ipaddress.ip_address(a).is_global for a in _resolved(probe, host))


def _is_private(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return ip.is_private and not ip.is_loopback


def _resolved(probe: P2PProbe, host: str) -> list[str]:
    try:
        return probe.resolve(host)
    except OSError:
        return []


def check_advertise(settings: Settings, probe: P2PProbe, timeout: float) -> Check:
    """The address peers dial leads to this host: one of its addresses, or one that reaches it from here
    (a port forward tested by a listener the doctor opens on P2P_PORT)."""
    p2p = settings.p2p
    name = "p2p address"
    remote_peers = [peer for peer in p2p.bootstrap if not is_loopback(peer.host)]
    fix_set = f"set {EnvVars.P2P_ADVERTISE} to the host:port peers can dial (this host's public address)"
    if p2p.advertise is None:
        derived = _derived_advertise(settings, probe)
        if derived == "":
            detail = (
                f"{EnvVars.P2P_ADVERTISE} unset: the client advertises its address on the route to the first "
                "bootstrap peer (or the RPC host)"
            )
            return Check(name, Status.OK, detail)
        if is_loopback(derived) and remote_peers:
            detail = (
                f"{EnvVars.P2P_ADVERTISE} unset: the client would advertise {derived}, "
                "which peers elsewhere cannot dial"
            )
            return Check(name, Status.WARN, detail, fix_set)
        if _is_private(derived) and any(_on_internet(probe, peer.host) for peer in p2p.bootstrap):
            detail = (
                f"{EnvVars.P2P_ADVERTISE} unset: the client would advertise {derived}, a private address, "
                "to peers on the internet"
            )
            fix = f"{fix_set}, and forward {EnvVars.P2P_PORT} to this machine"
            return Check(name, Status.WARN, detail, fix)
        return Check(name, Status.OK, f"{EnvVars.P2P_ADVERTISE} unset: the client advertises {derived}")
    advertise = p2p.advertise
    try:
        addresses = probe.resolve(advertise.host)
    except OSError as exc:
        fix = f"check {EnvVars.P2P_ADVERTISE} {settings.where(EnvVars.P2P_ADVERTISE)}"
        return Check(name, Status.FAIL, f"{advertise.host} does not resolve: {_reason(exc)}", fix)
    port_note = ""
    if advertise.port is not None and p2p.port not in (0, advertise.port):
        port_note = f"; port {advertise.port} must be forwarded to {EnvVars.P2P_PORT} {p2p.port}"
    local = [a for a in addresses if _is_local(probe, a)]
    if local:
        if all(is_loopback(a) for a in local) and remote_peers:
            detail = f"{advertise} is this host's loopback: peers elsewhere cannot dial it"
            return Check(name, Status.WARN, detail, fix_set)
        if advertise.port is not None and p2p.port == 0:
            detail = f"{advertise} is an address of this host, but {EnvVars.P2P_PORT} is 0 (ephemeral)"
            fix = f"set {EnvVars.P2P_PORT} to {advertise.port}, or drop the port from {EnvVars.P2P_ADVERTISE}"
            return Check(name, Status.WARN, detail, fix)
        return Check(name, Status.OK, f"{advertise} is an address of this host ({local[0]}){port_note}")
    target = advertise.port or p2p.port
    if target == 0:
        detail = (
            f"{advertise.host} is not an address of this host and {EnvVars.P2P_PORT} is 0: nothing to test"
        )
        fix = (
            f"behind a port forward, set {EnvVars.P2P_PORT} and {EnvVars.P2P_ADVERTISE}=host:port to match it"
        )
        return Check(name, Status.WARN, detail, fix)
    dial = str(HostPort(advertise.host, target))
    try:
        if p2p.port == 0:
            probe.connect(advertise.host, target, timeout)  # the doctor cannot tell which port to listen on
        else:
            probe.reach(p2p.bind, p2p.port, advertise.host, target, timeout)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:  # the client (or something) listens already: dial it directly
            try:
                probe.connect(advertise.host, target, timeout)
            except OSError as again:
                exc = again
            else:
                return Check(name, Status.OK, f"{dial} answers from this host{port_note}")
        detail = f"{dial} is not an address of this host and does not lead back to it: {_reason(exc)}"
        fix = (
            "forward that port to this host (many routers cannot loop back: test from outside too), "
            f"or correct {EnvVars.P2P_ADVERTISE}"
        )
        return Check(name, Status.WARN, detail, fix)
    return Check(name, Status.OK, f"{dial} leads to this host (a port forward){port_note}")


def check_bootstrap(settings: Settings, probe: P2PProbe, timeout: float) -> Check:
    """Each bootstrap peer answers a TCP connect; WARN, never FAIL, when one does not (the run may not have
    started yet). An entry that is this client's own address is not dialled."""
    p2p = settings.p2p
    name = "p2p bootstrap"
    if not p2p.bootstrap:
        detail = f"{EnvVars.P2P_BOOTSTRAP} unset: the client learns only the peers that dial it"
        fix = (
            f"set {EnvVars.P2P_BOOTSTRAP} to the host:port the run owner hands out "
            "(unless this client is the run's first peer)"
        )
        return Check(name, Status.WARN, detail, fix)
    seen: list[str] = []
    silent: list[str] = []
    for peer in p2p.bootstrap[:MAX_PEERS]:
        assert peer.port is not None  # parse_bootstrap requires one
        if peer.port == p2p.port and any(_is_local(probe, a) for a in _resolved(probe, peer.host)):
            seen.append(f"{peer} (this client)")
            continue
        try:
            probe.connect(peer.host, peer.port, timeout)
        except OSError as exc:
            silent.append(f"{peer} ({_reason(exc)})")
        else:
            seen.append(str(peer))
    skipped = len(p2p.bootstrap) - MAX_PEERS
    more = f"; {skipped} more not dialled" if skipped > 0 else ""
    if silent:
        answered = f"; answered: {', '.join(seen)}" if seen else ""
        detail = (
            f"{len(silent)} of {len(seen) + len(silent)} did not answer: {', '.join(silent)}{answered}{more}"
        )
        fix = (
            "fine if the run has not started yet; otherwise check the addresses with the run owner, "
            "and that no firewall blocks them"
        )
        return Check(name, Status.WARN, detail, fix)
    return Check(name, Status.OK, f"{len(seen)} answered: {', '.join(seen)}{more}")


def check_p2p(settings: Settings, probe: P2PProbe, timeout: float) -> list[Check]:
    """The three P2P checks, in report order."""
    peer_timeout = min(timeout, PEER_TIMEOUT)
    return [
        check_port(settings, probe),
        check_advertise(settings, probe, peer_timeout),
        check_bootstrap(settings, probe, peer_timeout),
    ]
