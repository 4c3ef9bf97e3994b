"""A fake P2PProbe: a host with a few addresses, busy ports, peers that answer and port forwards."""

from __future__ import annotations

import dataclasses
import errno
import ipaddress

from psyche.manager.doctor_p2p import P2PProbe

PEER = "peer.example.org"
PEER_IP = "192.0.2.10"
HOST_IP = "10.0.0.5"  # this host's LAN address
PUBLIC_IP = "203.0.113.5"  # the router's public address, in front of this host


@dataclasses.dataclass
class FakeP2P(P2PProbe):
    """This host owns ``local``; ports in ``busy`` are taken on every address; ``up`` answer a connect;
    ``forwards`` maps a public (host, port) to the local port it leads to. Every dial is recorded."""

    local: set[str] = dataclasses.field(default_factory=lambda: {"127.0.0.1", "::1", HOST_IP})
    busy: set[int] = dataclasses.field(default_factory=set)
    up: set[tuple[str, int]] = dataclasses.field(default_factory=lambda: {(PEER, 4100)})
    names: dict[str, list[str]] = dataclasses.field(
        default_factory=lambda: {PEER: [PEER_IP], "localhost": ["127.0.0.1"], "me.example.org": [HOST_IP]}
    )
    forwards: dict[tuple[str, int], int] = dataclasses.field(default_factory=dict)
    dialled: list[tuple[str, int]] = dataclasses.field(default_factory=list)

    def bind(self, host: str, port: int) -> None:
        if not ipaddress.ip_address(host).is_unspecified and host not in self.local:
            raise OSError(errno.EADDRNOTAVAIL, "Cannot assign requested address")
        if port in self.busy:
            raise OSError(errno.EADDRINUSE, "Address already in use")

    def resolve(self, host: str) -> list[str]:
        try:
            return [str(ipaddress.ip_address(host))]
        except ValueError:
            pass
        if host not in self.names:
            raise OSError(-2, "Name or service not known")
        return self.names[host]

    def connect(self, host: str, port: int, timeout: float) -> None:
        self.dialled.append((host, port))
        if (host, port) not in self.up:
            raise ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")

    def route_source(self, host: str, port: int) -> str:
        return "127.0.0.1" if ipaddress.ip_address(host).is_loopback else HOST_IP

    def reach(self, bind: str, port: int, host: str, target: int, timeout: float) -> None:
        self.bind(bind, port)
        self.dialled.append((host, target))
        if self.forwards.get((host, target)) != port:
            raise TimeoutError("timed out")
