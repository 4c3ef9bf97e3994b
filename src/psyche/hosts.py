"""Host names and addresses as the project writes them into URLs and judges them (no I/O)."""

from __future__ import annotations

import ipaddress


def url_host(host: str) -> str:
    """``host`` as it goes into a URL (IPv6 in brackets)."""
    return f"[{host}]" if ":" in host else host


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address, or the name localhost) is this machine's loopback."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
