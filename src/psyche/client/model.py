"""The LLaMA-style decoder (RMSNorm, rotary embeddings, SwiGLU, grouped-query attention) and its size presets.

Module and parameter names follow Hugging Face's ``LlamaForCausalLM`` (``model.layers.N.self_attn.q_proj``,
``lm_head``...) and rotary embeddings use its rotate-half convention, so a Hub checkpoint's safetensors load
as they are and our checkpoints read back in ``transformers``.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from psyche.errors import ConfigError


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """The shape of the decoder; ``max_seq_len`` comes from the run's model config."""

    vocab_size: int
    dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    ffn_dim: int
    max_seq_len: int
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    tie_embeddings: bool = False

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    def check(self) -> None:
        """Raise ConfigError when the shape does not hold together."""
        if self.dim % self.n_heads or self.n_heads % self.n_kv_heads:
            raise ConfigError(
                f"model: dim {self.dim}, n_heads {self.n_heads} and n_kv_heads {self.n_kv_heads} "
                "must divide evenly"
            )
        if self.head_dim % 2:
            raise ConfigError(f"model: head_dim {self.head_dim} must be even for rotary embeddings")
        if min(self.vocab_size, self.n_layers, self.ffn_dim, self.max_seq_len) <= 0:
            raise ConfigError(f"model: sizes must be positive: {self}")

    def num_parameters(self) -> int:
        """Parameter count (embeddings included, a tied head counted once)."""
        attn = self.dim * self.head_dim * (2 * self.n_heads + 2 * self.n_kv_heads)
        layer = attn + 3 * self.dim * self.ffn_dim + 2 * self.dim
        head = 0 if self.tie_embeddings else self.vocab_size * self.dim
        return self.vocab_size * self.dim + self.n_layers * layer + self.dim + head

    def flops_per_token(self) -> float:
        """Training FLOPs per token: 6 per matmul parameter (the embedding lookup is no matmul) plus the
        attention scores, 12·layers·dim·seq (PaLM appendix B; no discount for the causal mask)."""
        matmul_params = self.num_parameters() - self.vocab_size * self.dim * (0 if self.tie_embeddings else 1)
        return 6.0 * matmul_params + 12.0 * self.n_layers * self.dim * self.max_seq_len

    def to_hf_config(self) -> dict[str, Any]:
        """A ``config.json`` that ``transformers`` reads as a LlamaForCausalLM."""
        return {
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "vocab_size": self.vocab_size,
            "hidden_size": self.dim,
            "num_hidden_layers": self.n_layers,
            "num_attention_heads": self.n_heads,
            "num_key_value_heads": self.n_kv_heads,
            "intermediate_size": self.ffn_dim,
            "max_position_embeddings": self.max_seq_len,
            "rope_theta": self.rope_theta,
            "rms_norm_eps": self.norm_eps,
            "tie_word_embeddings": self.tie_embeddings,
            "hidden_act": "silu",
        }

    @classmethod
    def from_hf_config(cls, config: dict[str, Any], max_seq_len: int) -> ModelSpec:
        """Read a LLaMA ``config.json``; the run's ``max_seq_len`` wins over the file's.

        Raises:
            ConfigError: a field is missing or of the wrong type, or the shape does not hold together.
        """
        try:
            heads = int(config["num_attention_heads"])
            spec = cls(
                vocab_size=int(config["vocab_size"]),
                dim=int(config["hidden_size"]),
                n_layers=int(config["num_hidden_layers"]),
                n_heads=heads,
                n_kv_heads=int(config.get("num_key_value_heads") or heads),
                ffn_dim=int(config["intermediate_size"]),
                max_seq_len=max_seq_len,
                rope_theta=float(config.get("rope_theta", 10000.0)),
                norm_eps=float(config.get("rms_norm_eps", 1e-5)),
                tie_embeddings=bool(config.get("tie_word_embeddings", False)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"model config.json: missing or bad field {exc}") from exc
        spec.check()
        return spec

    def as_dict(self) -> dict[str, Any]:
        """The spec as a plain dict (for config.json and logs)."""
        return asdict(self)


# Presets for Dummy checkpoints; the run's max_seq_len replaces the placeholder 0.
PRESETS: dict[str, ModelSpec] = {
    "tiny": ModelSpec(
        vocab_size=512, dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=192, max_seq_len=0
    ),
    "20m": ModelSpec(
        vocab_size=32000, dim=256, n_layers=8, n_heads=8, n_kv_heads=8, ffn_dim=768, max_seq_len=0
    ),
    "125m": ModelSpec(
        vocab_size=32000, dim=768, n_layers=12, n_heads=12, n_kv_heads=4, ffn_dim=2048, max_seq_len=0
    ),
}


def preset(name: str, max_seq_len: int) -> ModelSpec:
    """A named preset sized for ``max_seq_len``; ConfigError naming the choices otherwise."""
    try:
        spec = replace(PRESETS[name], max_seq_len=max_seq_len)
    except KeyError:
        raise ConfigError(f"unknown model preset {name!r}; choose one of {', '.join(PRESETS)}") from None
    spec.check()
    return spec


class RMSNorm(nn.Module):
    """Root-mean-square layer norm with a learned scale, as Llama uses."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` normalised over its last dimension (in fp32), scaled, in ``x``'s dtype."""
        # Normalise in fp32 as HF does: bf16 variance loses too much precision.
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(x.dtype)


def rotary_tables(spec: ModelSpec, device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin tables of shape (max_seq_len, head_dim), rotate-half layout."""
    inv = 1.0 / (spec.rope_theta ** (torch.arange(0, spec.head_dim, 2, dtype=torch.float32) / spec.head_dim))
    freqs = torch.outer(torch.arange(spec.max_seq_len, dtype=torch.float32), inv)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().to(device), emb.sin().to(device)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return (x * cos + rotated * sin).to(x.dtype)


class Attention(nn.Module):
    """Causal self-attention with rotary positions and grouped-query heads (Llama's, no biases)."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.head_dim = spec.head_dim
        self.q_proj = nn.Linear(spec.dim, spec.n_heads * spec.head_dim, bias=False)
        self.k_proj = nn.Linear(spec.dim, spec.n_kv_heads * spec.head_dim, bias=False)
        self.v_proj = nn.Linear(spec.dim, spec.n_kv_heads * spec.head_dim, bias=False)
        self.o_proj = nn.Linear(spec.n_heads * spec.head_dim, spec.dim, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """Attention over ``x`` (batch, seq, dim) with the rotary tables for its positions."""
        b, s, _ = x.shape
        # -1 heads: under tensor parallelism each rank holds n_heads/tp query and n_kv_heads/tp kv heads.
        q = self.q_proj(x).view(b, s, -1, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, s, -1, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, s, -1, self.head_dim).transpose(1, 2)
        q, k = _rotate(q, cos, sin), _rotate(k, cos, sin)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=q.shape[1] != k.shape[1])
        projected: torch.Tensor = self.o_proj(out.transpose(1, 2).reshape(b, s, -1))
        return projected


class MLP(nn.Module):
    """The gated SiLU feed-forward block (SwiGLU)."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(spec.dim, spec.ffn_dim, bias=False)
        self.up_proj = nn.Linear(spec.dim, spec.ffn_dim, bias=False)
        self.down_proj = nn.Linear(spec.ffn_dim, spec.dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``down(silu(gate(x)) * up(x))``."""
        out: torch.Tensor = self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))
        return out


class DecoderLayer(nn.Module):
    """One pre-norm transformer block: attention then MLP, each with a residual."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(spec.dim, spec.norm_eps)
        self.self_attn = Attention(spec)
        self.post_attention_layernorm = RMSNorm(spec.dim, spec.norm_eps)
        self.mlp = MLP(spec)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """The block applied to ``x`` (batch, seq, dim)."""
        h: torch.Tensor = x + self.self_attn(self.input_layernorm(x), cos, sin)
        out: torch.Tensor = h + self.mlp(self.post_attention_layernorm(h))
        return out


class _Body(nn.Module):
    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(spec.vocab_size, spec.dim)
        self.layers = nn.ModuleList(DecoderLayer(spec) for _ in range(spec.n_layers))
        self.norm = RMSNorm(spec.dim, spec.norm_eps)


class Transformer(nn.Module):
    """Decoder-only LM; ``forward(tokens)`` gives logits, ``loss_sum(batch)`` the summed next-token loss."""

    rope_cos: torch.Tensor
    rope_sin: torch.Tensor

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        spec.check()
        self.spec = spec
        self.model = _Body(spec)
        self.lm_head = nn.Linear(spec.dim, spec.vocab_size, bias=False)
        if spec.tie_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight
        cos, sin = rotary_tables(spec)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits (batch, seq, vocab) for ``tokens`` (batch, seq)."""
        s = tokens.shape[1]
        cos, sin = self.rope_cos[:s], self.rope_sin[:s]
        h = self.model.embed_tokens(tokens)
        for layer in self.model.layers:
            h = layer(h, cos, sin)
        logits: torch.Tensor = self.lm_head(self.model.norm(h))
        return logits

    def loss_sum(self, batch: torch.Tensor) -> torch.Tensor:
        """Summed cross-entropy of predicting ``batch[:, 1:]`` from ``batch[:, :-1]`` (fp32 logits)."""
        logits = self(batch[:, :-1])
        return F.cross_entropy(
            logits.float().reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1), reduction="sum"
        )

    @torch.no_grad()
    def init_weights(self, seed: int) -> None:
        """Deterministic init from the run's seed: N(0, 0.02), output projections scaled by depth (GPT-2)."""
        gen = torch.Generator().manual_seed(seed)
        std_out = 0.02 / math.sqrt(2 * self.spec.n_layers)
        for name, p in self.named_parameters():
            if name.endswith("layernorm.weight") or name == "model.norm.weight":
                p.fill_(1.0)
                continue
            std = std_out if name.endswith(("o_proj.weight", "down_proj.weight")) else 0.02
            # Drawn on the CPU with one generator so every device and process gets identical weights.
            p.copy_(torch.randn(p.shape, generator=gen) * std)


def load_hf_weights(model: Transformer, directory: Path) -> None:
    """Load every ``*.safetensors`` in a Hugging Face model directory into ``model`` (names must match).

    Raises:
        ConfigError: no safetensors files, or weights whose names do not match the model.
    """
    from safetensors.torch import load_file

    files = sorted(directory.glob("*.safetensors"))
    if not files:
        raise ConfigError(f"model directory {directory} has no *.safetensors files")
    state: dict[str, torch.Tensor] = {}
    for f in files:
        state.update(load_file(str(f)))
    state = {k: v for k, v in state.items() if not k.endswith("rotary_emb.inv_freq")}
    if model.spec.tie_embeddings:
        state.pop("lm_head.weight", None)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [m for m in missing if not (model.spec.tie_embeddings and m == "lm_head.weight")]
    if missing or unexpected:
        raise ConfigError(
            f"model directory {directory}: weights do not match a LLaMA model "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]})"
        )


def read_hf_config(directory: Path) -> dict[str, Any]:
    """The directory's ``config.json`` as a dict.

    Raises:
        ConfigError: config.json is missing or not JSON.
    """
    path = directory / "config.json"
    try:
        loaded: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"model directory {directory}: cannot read config.json: {exc}") from exc
    return loaded
