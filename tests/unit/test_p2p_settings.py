"""psyche.p2p.settings: P2P_* parsing (one-line errors naming the variable) and the advertise rule."""

from __future__ import annotations

import pytest

from psyche.errors import ConfigError
from psyche.p2p.settings import P2PSettings, load_p2p_settings, resolve_advertise, route_address


def test_defaults_and_full_settings() -> None:
    assert load_p2p_settings({}) == P2PSettings(0, "0.0.0.0", None, ())
    env = {
        "P2P_PORT": " 4100 ",
        "P2P_BIND": "10.0.0.5",
        "P2P_ADVERTISE": "203.0.113.7:5000",
        "P2P_BOOTSTRAP": "10.0.0.6:4100, [fd00::1]:4100,peer.example:1",
    }
    assert load_p2p_settings(env) == P2PSettings(
        4100, "10.0.0.5", "203.0.113.7:5000", (("10.0.0.6", 4100), ("fd00::1", 4100), ("peer.example", 1))
    )
    assert load_p2p_settings({"P2P_BIND": "[::]"}).bind == "::"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"P2P_PORT": "http"}, "P2P_PORT: not a port number (0-65535): 'http'"),
        ({"P2P_PORT": "70000"}, "P2P_PORT: not a port number"),
        ({"P2P_BIND": "a b"}, "P2P_BIND: not a host or address: 'a b'"),
        ({"P2P_ADVERTISE": "host:x"}, "P2P_ADVERTISE: expected host or host:port"),
        ({"P2P_ADVERTISE": "0.0.0.0"}, "P2P_ADVERTISE: 0.0.0.0 is not an address peers can dial"),
        ({"P2P_BOOTSTRAP": "10.0.0.6"}, "P2P_BOOTSTRAP: expected a comma list of host:port: no port"),
        ({"P2P_BOOTSTRAP": "a:1,http://b:2"}, "P2P_BOOTSTRAP: expected a comma list of host:port"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_p2p_settings(env)
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


def test_advertise_rule() -> None:
    assert resolve_advertise("203.0.113.7", "0.0.0.0", 4100, []) == ("203.0.113.7", 4100)
    assert resolve_advertise("203.0.113.7:80", "0.0.0.0", 4100, []) == ("203.0.113.7", 80)
    assert resolve_advertise(None, "10.0.0.5", 4100, ["127.0.0.1"]) == ("10.0.0.5", 4100)
    # The wildcard: the local address of the route towards the first bootstrap host (no packet sent).
    assert resolve_advertise(None, "0.0.0.0", 4100, ["127.0.0.1"]) == ("127.0.0.1", 4100)
    assert resolve_advertise(None, "0.0.0.0", 4100, []) == ("127.0.0.1", 4100)
    assert route_address("no-such-host.invalid") is None
    assert resolve_advertise(None, "::", 4100, ["no-such-host.invalid"]) == ("127.0.0.1", 4100)
