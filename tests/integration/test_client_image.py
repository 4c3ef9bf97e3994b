"""The real client image: built offline by scripts/build-client-image, runs torch + psyche, pulls back."""

from __future__ import annotations

import json

import docker
import httpx
import pytest
from solders.keypair import Keypair

from psyche.errors import ClientExited
from psyche.manager import events as ev
from psyche.manager.launch import LaunchConfig, RestartPolicy
from psyche.manager.runtime import DockerRuntime
from psyche.manager.supervisor import Supervisor
from tests.support.client_image import ClientImage

pytestmark = [pytest.mark.docker, pytest.mark.slow]

# Five SGD steps of a 16->32->1 MLP on fixed random data (spec/ci-docker.md's train.py), plus the imports
# the client needs; exits with a code the test chooses, so the exit status proves the script ran to its end.
TRAIN_STEPS = """
import os, sys, torch, numpy
import psyche.chain, psyche.client, psyche.client.train
torch.manual_seed(0)
x, y = torch.randn(64, 16), torch.randn(64, 1)
model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1))
opt = torch.optim.SGD(model.parameters(), lr=0.1)
losses = []
for _ in range(5):
    opt.zero_grad()
    loss = torch.nn.functional.mse_loss(model(x), y)
    loss.backward()
    opt.step()
    losses.append(round(loss.item(), 4))
assert losses[-1] < losses[0], losses
print("torch", torch.__version__, "cuda", torch.cuda.is_available(), "losses", losses)
print("env", os.environ["NVIDIA_DRIVER_CAPABILITIES"], os.environ["TORCHINDUCTOR_CACHE_DIR"],
      os.environ["PYTHONUNBUFFERED"])
sys.exit(int(os.environ["EXIT_CODE"]))
"""


def test_runs_cpu_train_steps_and_exits_with_the_chosen_code(
    docker_client: docker.DockerClient, client_image: ClientImage, container_labels: dict[str, str]
) -> None:
    container = docker_client.containers.run(
        client_image.content_ref,
        ["-c", TRAIN_STEPS],
        entrypoint=["python3"],
        environment={"EXIT_CODE": "3"},
        network_mode="host",
        labels=container_labels,
        detach=True,
    )

    assert container.wait(timeout=120)["StatusCode"] == 3, container.logs().decode()
    lines = container.logs().decode().splitlines()
    assert lines[0].startswith("torch 2.13.0"), lines
    assert "cuda False" in lines[0]
    assert lines[1] == "env all /tmp/torchinductor 1"


def test_entrypoint_is_the_client_and_refuses_a_missing_rpc(
    docker_client: docker.DockerClient, client_image: ClientImage, container_labels: dict[str, str]
) -> None:
    image = docker_client.images.get(client_image.content_ref)
    assert image.attrs["Config"]["Entrypoint"] == ["python3", "-m", "psyche.client"]
    labels = image.attrs["Config"]["Labels"]
    assert labels["org.opencontainers.image.version"] == client_image.version
    assert labels["psyche.client.content-hash"] == client_image.content_hash

    # NVIDIA_DRIVER_CAPABILITIES comes from the image, so the first missing variable is RPC (contract 3.1).
    container = docker_client.containers.run(
        client_image.content_ref, network_mode="host", labels=container_labels, detach=True
    )

    assert container.wait(timeout=120)["StatusCode"] == 1
    assert b"[!] The RPC env variable was not set." in container.logs()


def test_pulls_back_from_the_registry_as_the_same_image(
    docker_client: docker.DockerClient, client_image: ClientImage, registry: str
) -> None:
    built_id = docker_client.images.get(client_image.content_ref).id
    docker_client.images.remove(client_image.content_ref)  # an untag: the version tag keeps the layers
    with pytest.raises(docker.errors.ImageNotFound):
        docker_client.images.get(client_image.content_ref)

    pulled = docker_client.images.pull(client_image.repository, tag=f"content-{client_image.content_hash}")

    assert pulled.id == built_id
    # The pulled image records the manifest digest the registry serves for the content tag.
    name = client_image.repository.split("/", 1)[1]
    accept = {"Accept": "application/vnd.docker.distribution.manifest.v2+json"}
    manifest = f"http://{registry}/v2/{name}/manifests/content-{client_image.content_hash}"
    served = httpx.head(manifest, headers=accept, timeout=10, trust_env=False).headers[
        "Docker-Content-Digest"
    ]
    assert f"{client_image.repository}@{served}" in pulled.attrs["RepoDigests"]


def test_second_build_reuses_the_pushed_image(
    client_image: ClientImage, registry: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from tests.support.client_image import build_client_image

    again = build_client_image(registry, tmp_path_factory.mktemp("client-image-again") / "summary.json")

    if again.content_hash != client_image.content_hash:
        pytest.skip("the checkout changed during the session (a new content hash): nothing to compare")
    assert again.summary["built"] is False
    assert again.summary["pushed"] is False
    assert again.summary["total_s"] < 30


def test_under_the_manager_the_client_reads_its_key_from_the_tmpfs_file_and_runs_once(
    docker_client: docker.DockerClient, client_image: ClientImage, container_labels: dict[str, str]
) -> None:
    # The real supervisor: the image's label picks the key file, PSYCHE_RUN_ONCE stops the image's own loop.
    # No chain answers on port 9, so the client logs its wallet (read from the file) and exits 1, once.
    wallet = Keypair()
    secret = json.dumps(list(bytes(wallet)), separators=(",", ":"))
    env = {"RPC": "http://127.0.0.1:9", "WS_RPC": "ws://127.0.0.1:9", "RAW_WALLET_PRIVATE_KEY": secret}
    launch = LaunchConfig(
        run_id="key-file",
        env=env,
        repository=client_image.repository,
        gpus=False,
        extra_labels=container_labels,
    )
    events: list[ev.Event] = []
    inspected: list[dict[str, object]] = []

    def on_event(event: ev.Event) -> None:
        events.append(event)
        if isinstance(event, ev.ContainerStarted):
            inspected.append(docker_client.api.inspect_container(event.container_id))

    with DockerRuntime(docker_client) as runtime:
        supervisor = Supervisor(
            runtime,
            launch,
            lambda: f"content-{client_image.content_hash}",
            on_event=on_event,
            policy=RestartPolicy(max_restarts=0),
        )
        with pytest.raises(ClientExited):
            supervisor.run()

    lines = [line.text for e in events if isinstance(e, ev.LogLines) for line in e.lines]
    text = "\n".join(lines)
    assert any(isinstance(e, ev.WalletKeyDelivery) and e.via == "file" for e in events)
    assert lines[0] == "[+] Psyche reference client, run key-file (run once: the run-manager restarts it)"
    assert text.count(f"wallet {wallet.pubkey()}, run key-file") == 1, text  # read from the file, one run
    assert "Restarting" not in text
    assert [e.exit_code for e in events if isinstance(e, ev.ContainerExited)] == [1]
    assert secret not in json.dumps(inspected) and secret not in text
    assert "WALLET_PRIVATE_KEY_PATH=/run/psyche/wallet-key" in inspected[0]["Config"]["Env"]  # type: ignore[index]
