"""`run-manager doctor`'s P2P checks with real sockets on 127.0.0.1: a taken port, a free one, bootstrap peers
that answer and one that refuses, and the listener the address test opens (nothing is left listening)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from click.testing import CliRunner

from psyche.manager import cli as cli_module
from psyche.manager.doctor_p2p import SocketProbe
from tests.support.net import dead_url, listening_port, unused_port


def p2p_checks(tmp_path: Path, variables: dict[str, str]) -> dict[str, dict[str, str]]:
    """The real command (real seams), with a dead RPC and no Docker engine: only the P2P checks matter."""
    env_file = tmp_path / ".env"
    lines = {"RPC": dead_url("/"), "WS_RPC": f"ws://127.0.0.1:{unused_port()}", **variables}
    env_file.write_text("".join(f"{k}={v}\n" for k, v in lines.items()))
    obj = {"HOME": str(tmp_path), "NO_COLOR": "1", "DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"}
    result = CliRunner().invoke(
        cli_module.cli, ["doctor", "--env-file", str(env_file), "--json", "--timeout", "1"], obj=obj
    )
    report = json.loads(result.stdout)
    return {c["name"]: c for c in report["checks"] if c["name"].startswith("p2p")}


def test_taken_port_fails_free_port_passes_and_peers_are_dialled(tmp_path: Path) -> None:
    with listening_port() as taken, listening_port() as peer:
        closed = unused_port()
        checks = p2p_checks(
            tmp_path,
            {
                "P2P_BIND": "127.0.0.1",
                "P2P_PORT": str(taken),
                "P2P_ADVERTISE": "127.0.0.1",
                "P2P_BOOTSTRAP": f"127.0.0.1:{peer},127.0.0.1:{closed}",
            },
        )
        assert checks["p2p port"]["status"] == "FAIL"
        assert checks["p2p port"]["detail"] == f"127.0.0.1:{taken} is in use"
        assert checks["p2p address"]["status"] == "OK"
        assert checks["p2p address"]["detail"] == "127.0.0.1 is an address of this host (127.0.0.1)"
        bootstrap = checks["p2p bootstrap"]
        assert bootstrap["status"] == "WARN"
        assert bootstrap["detail"] == (
            f"1 of 2 did not answer: 127.0.0.1:{closed} (Connection refused); answered: 127.0.0.1:{peer}"
        )

        port = unused_port()
        checks = p2p_checks(
            tmp_path, {"P2P_BIND": "127.0.0.1", "P2P_PORT": str(port), "P2P_BOOTSTRAP": f"127.0.0.1:{peer}"}
        )
        assert checks["p2p port"] == {
            "name": "p2p port",
            "status": "OK",
            "detail": f"127.0.0.1:{port} is free",
            "fix": None,
        }
        assert checks["p2p bootstrap"]["status"] == "OK"
        assert checks["p2p address"]["detail"] == "P2P_ADVERTISE unset: the client advertises 127.0.0.1"
    # The doctor's own bind left nothing behind: the port can be listened on again at once.
    with socket.create_server(("127.0.0.1", port)):
        pass


def test_an_address_that_leads_to_the_listener_is_reached_and_one_that_does_not_is_refused() -> None:
    probe = SocketProbe()
    port = unused_port()
    probe.reach("127.0.0.1", port, "127.0.0.1", port, 2.0)
    elsewhere = unused_port()
    with pytest.raises(ConnectionRefusedError):
        probe.reach("127.0.0.1", port, "127.0.0.1", elsewhere, 2.0)
    assert probe.resolve("localhost")[0] in ("127.0.0.1", "::1")
    assert probe.route_source("127.0.0.1", port) == "127.0.0.1"  # the kernel's route, no packet sent
