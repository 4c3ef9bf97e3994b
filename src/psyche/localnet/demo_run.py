"""The run config `scripts/demo` gives its run (through the owner's `update-config`): Dummy weights and data
at a real-time pace, one to N clients, and the optimizer chosen by ``--optimizer``.

``python -m psyche.localnet.demo_run --optimizer distro --clients 2`` prints the TOML.

The default is DisTrO with upstream's settings (its nano/light configs: chunk 64, top-k 8, decay 0.999,
1-bit signs, clip 1.0), so the demo's clients share their results peer to peer the way a real run does;
``--optimizer adamw`` goes back to every client training with AdamW on its own batch (no exchange needed).
"""

from __future__ import annotations

import argparse
from typing import Final

from psyche.chain.accounts.optimizer import AdamW, Distro

# Upstream's DisTrO settings (PsycheFoundation/psyche config/*/config.toml): what the demo runs by default.
DEMO_DISTRO: Final = Distro(
    clip_grad_norm=1.0,
    weight_decay=None,
    compression_decay=0.999,
    compression_topk=8,
    compression_chunk=64,
    quantize_1bit=True,
)
DEMO_ADAMW: Final = AdamW(betas=(0.9, 0.95), weight_decay=0.0, eps=1e-8, clip_grad_norm=1.0)
DEMO_OPTIMIZERS: Final[dict[str, AdamW | Distro]] = {"distro": DEMO_DISTRO, "adamw": DEMO_ADAMW}
DEFAULT_DEMO_OPTIMIZER: Final = "distro"
BASE_LR: Final = 1e-3  # sign steps of 1e-3 (DisTrO) move a parameter about as far as AdamW's steps do

_CONFIG = """\
[config]
warmup_time = 5
cooldown_time = 5
max_round_train_time = 20
round_witness_time = 2
global_batch_size_warmup_tokens = 0
epoch_time = 40
total_steps = 1000
init_min_clients = {clients}
min_clients = 1
witness_nodes = 0
global_batch_size_start = 8
global_batch_size_end = 8
verification_percent = 0
waiting_for_members_extra_time = 3

[model.LLM]
architecture = "HfLlama"
data_type = "Pretraining"
max_seq_len = 64
cold_start_warmup_steps = 0
data_location = "Dummy"

[model.LLM.checkpoint.Dummy]
repo_id = "psyche-demo/tiny-llama"

[model.LLM.lr_schedule.Constant]
base_lr = {base_lr}
warmup_init_lr = 0.0
warmup_steps = 10

"""


def _number(value: float | None) -> str:
    assert value is not None
    return repr(float(value))


def optimizer_toml(optimizer: AdamW | Distro) -> str:
    """The ``[model.LLM.optimizer.*]`` table for ``optimizer``."""
    if isinstance(optimizer, AdamW):
        lines = [
            "[model.LLM.optimizer.AdamW]",
            f"betas = [{_number(optimizer.betas[0])}, {_number(optimizer.betas[1])}]",
            f"weight_decay = {_number(optimizer.weight_decay)}",
            f"eps = {_number(optimizer.eps)}",
        ]
    else:
        lines = [
            "[model.LLM.optimizer.Distro]",
            f"compression_decay = {_number(optimizer.compression_decay)}",
            f"compression_topk = {optimizer.compression_topk}",
            f"compression_chunk = {optimizer.compression_chunk}",
            f"quantize_1bit = {'true' if optimizer.quantize_1bit else 'false'}",
        ]
        if optimizer.weight_decay is not None:
            lines.append(f"weight_decay = {_number(optimizer.weight_decay)}")
    if optimizer.clip_grad_norm is not None:
        lines.append(f"clip_grad_norm = {_number(optimizer.clip_grad_norm)}")
    return "\n".join(lines) + "\n"


def demo_run_toml(optimizer: str = DEFAULT_DEMO_OPTIMIZER, clients: int = 1) -> str:
    """The demo run's config: the first epoch waits for all ``clients``; one is enough to go on."""
    if optimizer not in DEMO_OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}; choose one of {', '.join(DEMO_OPTIMIZERS)}")
    if clients < 1:
        raise ValueError("clients must be at least 1")
    head = _CONFIG.format(clients=clients, base_lr=_number(BASE_LR))
    return head + optimizer_toml(DEMO_OPTIMIZERS[optimizer])


def main(argv: list[str] | None = None) -> None:
    """Print the demo run's TOML on stdout."""
    parser = argparse.ArgumentParser(prog="python -m psyche.localnet.demo_run", description=__doc__)
    parser.add_argument("--optimizer", choices=sorted(DEMO_OPTIMIZERS), default=DEFAULT_DEMO_OPTIMIZER)
    parser.add_argument("--clients", type=int, default=1)
    args = parser.parse_args(argv)
    if args.clients < 1:
        parser.error("--clients must be at least 1")
    print(demo_run_toml(args.optimizer, args.clients), end="")


if __name__ == "__main__":
    main()
