"""The doctor's P2P checks over a fake host: port, advertised address and bootstrap peers, each outcome."""

from __future__ import annotations

from psyche.manager.doctor_report import Check, Status, exit_code
from tests.support.doctor_world import World, world
from tests.support.p2p_fakes import HOST_IP, PEER, PUBLIC_IP

__all__ = ["world"]  # the fixture, used by name


def p2p(world: World, **env: str) -> dict[str, Check]:
    world.env.update(env)
    checks = world.doctor()
    return {name: c for name, c in checks.items() if name.startswith("p2p")}


def test_defaults_ephemeral_port_and_the_address_is_left_to_the_client(world: World) -> None:
    checks = p2p(world)
    assert checks["p2p port"] == Check(
        "p2p port", Status.OK, "P2P_PORT 0 (ephemeral): the client picks a free port on 0.0.0.0 at each start"
    )
    assert checks["p2p address"] == Check(
        "p2p address", Status.OK, f"P2P_ADVERTISE unset: the client advertises {HOST_IP}"
    )
    assert checks["p2p bootstrap"] == Check("p2p bootstrap", Status.OK, f"1 answered: {PEER}:4100")
    assert world.p2p.dialled == [(PEER, 4100)]


def test_a_free_port_is_ok_and_a_busy_one_fails_with_the_fix(world: World) -> None:
    assert p2p(world, P2P_PORT="4100")["p2p port"].detail == "0.0.0.0:4100 is free"
    world.p2p.busy.add(4100)
    check = p2p(world)["p2p port"]
    assert (check.status, check.detail) == (Status.FAIL, "0.0.0.0:4100 is in use")
    assert check.fix == (
        "if your client runs already, that is it; otherwise stop what listens there "
        "(ss -ltnp 'sport = :4100') or choose another P2P_PORT in the environment"
    )
    assert exit_code(world.checks) == 1


def test_a_bind_address_of_another_host_fails(world: World) -> None:
    check = p2p(world, P2P_PORT="4100", P2P_BIND="10.9.9.9")["p2p port"]
    assert (check.status, check.detail) == (Status.FAIL, "P2P_BIND 10.9.9.9 is not an address of this host")
    assert check.fix == "set P2P_BIND to an address of this host (ip -brief addr), or 0.0.0.0"


def test_a_private_address_offered_to_peers_on_the_internet_warns(world: World) -> None:
    # A public address in the fake's name table only: the fake probe dials nothing.
    world.p2p.names["far.example.org"] = ["9.9.9.9"]
    check = p2p(world, P2P_BOOTSTRAP="far.example.org:4100")["p2p address"]
    assert check.status == Status.WARN
    assert check.detail == (
        f"P2P_ADVERTISE unset: the client would advertise {HOST_IP}, a private address, "
        "to peers on the internet"
    )
    assert check.fix == (
        "set P2P_ADVERTISE to the host:port peers can dial (this host's public address), "
        "and forward P2P_PORT to this machine"
    )
    world.env.pop("P2P_BOOTSTRAP")
    assert p2p(world)["p2p address"].detail == (
        "P2P_ADVERTISE unset: the client advertises its address on the route to the first bootstrap peer "
        "(or the RPC host)"
    )


def test_an_advertised_address_of_this_host_is_ok(world: World) -> None:
    check = p2p(world, P2P_PORT="4100", P2P_ADVERTISE="me.example.org:4100")["p2p address"]
    assert check == Check(
        "p2p address", Status.OK, f"me.example.org:4100 is an address of this host ({HOST_IP})"
    )
    check = p2p(world, P2P_ADVERTISE=f"{HOST_IP}:4200")["p2p address"]
    assert check.detail.endswith("; port 4200 must be forwarded to P2P_PORT 4100")


def test_loopback_is_refused_as_an_address_for_peers_on_other_machines(world: World) -> None:
    check = p2p(world, P2P_ADVERTISE="127.0.0.1")["p2p address"]
    assert (check.status, check.detail) == (
        Status.WARN,
        "127.0.0.1 is this host's loopback: peers elsewhere cannot dial it",
    )
    # Every peer on this machine (the demo): loopback is right.
    world.p2p.up.add(("127.0.0.1", 4100))
    check = p2p(world, P2P_BOOTSTRAP="127.0.0.1:4100")["p2p address"]
    assert check.status == Status.OK


def test_a_public_address_is_tested_through_a_listener_on_the_p2p_port(world: World) -> None:
    world.p2p.forwards[(PUBLIC_IP, 4100)] = 4100
    check = p2p(world, P2P_PORT="4100", P2P_ADVERTISE=f"{PUBLIC_IP}:4100")["p2p address"]
    assert check == Check("p2p address", Status.OK, f"{PUBLIC_IP}:4100 leads to this host (a port forward)")
    world.p2p.forwards.clear()
    check = p2p(world)["p2p address"]
    assert check.status == Status.WARN
    assert check.detail == (
        f"{PUBLIC_IP}:4100 is not an address of this host and does not lead back to it: timed out"
    )
    assert exit_code(world.checks) == 0  # a router that cannot loop back is common: not a failure


def test_a_busy_p2p_port_means_the_client_may_listen_already_so_the_address_is_dialled(world: World) -> None:
    world.p2p.busy.add(4100)
    world.p2p.up.add((PUBLIC_IP, 4100))
    check = p2p(world, P2P_PORT="4100", P2P_ADVERTISE=f"{PUBLIC_IP}:4100")["p2p address"]
    assert check == Check("p2p address", Status.OK, f"{PUBLIC_IP}:4100 answers from this host")


def test_an_advertised_name_that_does_not_resolve_fails(world: World) -> None:
    check = p2p(world, P2P_ADVERTISE="nowhere.invalid")["p2p address"]
    assert (check.status, check.detail) == (
        Status.FAIL,
        "nowhere.invalid does not resolve: Name or service not known",
    )
    assert check.fix == "check P2P_ADVERTISE in the environment"


def test_silent_bootstrap_peers_warn_and_name_each(world: World) -> None:
    check = p2p(world, P2P_BOOTSTRAP=f"{PEER}:4100,192.0.2.99:4100")["p2p bootstrap"]
    assert check.status == Status.WARN
    assert check.detail == (
        f"1 of 2 did not answer: 192.0.2.99:4100 (Connection refused); answered: {PEER}:4100"
    )
    assert check.fix is not None and check.fix.startswith("fine if the run has not started yet")
    assert exit_code(world.checks) == 0


def test_no_bootstrap_warns_and_this_clients_own_address_is_not_dialled(world: World) -> None:
    world.env.pop("P2P_BOOTSTRAP")
    check = p2p(world)["p2p bootstrap"]
    assert (check.status, check.detail) == (
        Status.WARN,
        "P2P_BOOTSTRAP unset: the client learns only the peers that dial it",
    )
    world.p2p.dialled.clear()
    check = p2p(world, P2P_PORT="4100", P2P_BOOTSTRAP="127.0.0.1:4100")["p2p bootstrap"]
    assert check == Check("p2p bootstrap", Status.OK, "1 answered: 127.0.0.1:4100 (this client)")
    assert world.p2p.dialled == []


def test_an_invalid_env_skips_the_p2p_checks(world: World) -> None:
    world.env["P2P_PORT"] = "http"
    checks = world.doctor()
    assert checks["env"].detail.startswith("P2P_PORT in the environment: not a port number from 0 to 65535")
    assert checks["p2p"].status == Status.SKIP
