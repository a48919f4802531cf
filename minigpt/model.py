"""The GPT: nanoGPT's shape with the old gpt.py's defects fixed, and the choices that won the ablation.

Pre-LN blocks (LayerNorm before attention and MLP, residual stream left alone), one fused qkv
projection, queries and keys RMS-normalised per head (QK-norm) and rotated by position (RoPE), causal
attention through `F.scaled_dot_product_attention` (flash/memory-efficient kernels where available),
the attention output projection applied, a ReLU-squared MLP, dropout, no biases, the token embedding
tied to the output head, and GPT-2's init: N(0, 0.02), with the projections into the residual stream
scaled by 1/sqrt(2 * n_layer) so its variance does not grow with depth. Each choice is a GPTConfig
field (and a minigpt-train flag); BENCHMARKS.md has the measurements behind the defaults.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
from torch.nn import functional as F

from .config import CHOICES, MODEL_FIELDS
from .layers import DropoutMasks, KeyedDropout, relu_squared


@dataclass(frozen=True)
class GPTConfig:
    vocab_size: int
    block_size: int = 64  # context length in characters
    n_layer: int = 8
    n_head: int = 8
    n_embd: int = 384
    dropout: float = 0.2
    bias: bool = False  # biases in Linear and LayerNorm (GPT-2 had them)
    tie_weights: bool = True  # the head shares the token embedding matrix
    init: str = "gpt2"  # gpt2: N(0, 0.02), residual projections / sqrt(2 n_layer); zero: those start at 0; torch
    mlp: str = "relu2"  # relu2 (ReLU squared), or gelu
    pos: str = "rope"  # rope (rotary, in attention), or learned position embeddings up to block_size
    qk_norm: bool = True  # RMS-normalise queries and keys per head before attention

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_train(cls, cfg, vocab_size: int) -> "GPTConfig":
        """The model part of a TrainConfig."""
        return cls(vocab_size=vocab_size, **{name: getattr(cfg, name) for name in MODEL_FIELDS})

    def check(self) -> None:
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} {value!r}: a whole number of at least 1")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd {self.n_embd} is not divisible by n_head {self.n_head}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout {self.dropout!r}: in [0, 1)")
        for name in ("init", "mlp", "pos"):
            allowed = CHOICES[name]
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} {getattr(self, name)!r}: choose one of {', '.join(allowed)}")


def rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs of channels (first half, second half) by position-dependent angles. x: (..., T, hs);
    cos: (T, hs), the cosines twice; sin: (T, hs), the sines negated, then as they are. With x = (x1, x2):
    (x1 cos - x2 sin, x2 cos + x1 sin), in 4 operations rather than 7 (one token's decoding step is
    that many kernel launches), with the same roundings."""
    return x * cos + x.roll(x.size(-1) // 2, dims=-1) * sin


def causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout_p: float) -> torch.Tensor:
    """Causal scaled_dot_product_attention; on the CPU under bf16 autocast, in fp32: torch's bf16 CPU kernels
    ran several times slower than fp32's (BENCHMARKS.md). (B, nh, T, hs) in, (B, nh, T, hs) out."""
    if q.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
        with torch.autocast("cpu", enabled=False):
            return F.scaled_dot_product_attention(q.float(), k.float(), v.float(), dropout_p=dropout_p, is_causal=True)
    return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True)


class KVCache:
    """Keys and values of every layer, preallocated for block_size positions: a prompt is run through
    the model once, then each new token attends to the cache instead of recomputing the window."""

    def __init__(self, cfg: GPTConfig, batch_size: int, device: torch.device, dtype: torch.dtype = torch.float32):
        shape = (batch_size, cfg.n_head, cfg.block_size, cfg.n_embd // cfg.n_head)  # (B, nh, T, hs)
        # one tensor per layer rather than one for all: a compiled step then updates each in place, where
        # writing into a view of one big tensor makes torch.compile copy all of it, layer after layer
        self.k = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(cfg.n_layer)]
        self.v = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(cfg.n_layer)]
        self.pos = 0  # positions filled (the model advances it after all layers have put theirs)
        # indexed decoding (engine.py: the CUDA graph, the compiled CPU step): one token at the position held
        # in this (1,) tensor, so that one captured or compiled step serves every position; the model then
        # leaves pos to the caller
        self.index: torch.Tensor | None = None
        self.mask: torch.Tensor | None = None  # with index: (1, block_size), 0 up to it, -inf past it

    def set_mask(self, dtype: torch.dtype) -> None:
        """The additive attention mask of the index's position, made once per step for every layer."""
        T, device = self.k[0].size(2), self.k[0].device
        slots = torch.arange(T, device=device)
        self.mask = torch.zeros(1, T, dtype=dtype, device=device).masked_fill_(slots > self.index, float("-inf"))

    def put(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store the new positions' keys and values; return all of them so far."""
        end = self.pos + k.size(2)
        self.k[layer][:, :, self.pos : end] = k
        self.v[layer][:, :, self.pos : end] = v
        return self.k[layer][:, :, :end], self.v[layer][:, :, :end]


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        assert cfg.n_embd % cfg.n_head == 0
        self.n_head, self.dropout, self.qk_norm = cfg.n_head, cfg.dropout, cfg.qk_norm
        self.c_attn = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=cfg.bias)  # q, k, v in one matmul
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)  # the projection gpt.py never applied
        self.resid_dropout = KeyedDropout(cfg.dropout)
        self.masks: DropoutMasks | None = None  # set by GPT: keyed masks for the attention weights on the CPU

    def forward(
        self,
        x: torch.Tensor,
        cache: KVCache | None = None,
        layer: int = 0,
        rope: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        B, T, C = x.shape
        hs = C // self.n_head
        qkv = self.c_attn(x).view(B, T, 3, self.n_head, hs).permute(2, 0, 3, 1, 4)  # (3, B, nh, T, hs)
        qk, v = qkv[:2], qkv[2]  # queries and keys are normalised and rotated together: half the ops per token
        if self.qk_norm:
            qk = F.rms_norm(qk, (hs,))
        if rope is not None:  # (T, hs) cosines and sines of these positions
            qk = rotary(qk, *rope)
        q, k = qk.unbind(0)  # (B, nh, T, hs)
        if cache is not None and cache.index is not None:  # one token; the slots past it are masked out
            cache.k[layer].index_copy_(2, cache.index, k)
            cache.v[layer].index_copy_(2, cache.index, v)
            y = F.scaled_dot_product_attention(q, cache.k[layer], cache.v[layer], attn_mask=cache.mask)
        elif cache is None and self.training and self.dropout > 0 and self.masks is not None and self.masks.usable(x):
            y = self.keyed_dropout_attention(q, k, v)
        elif cache is None or cache.pos == 0:
            if cache is not None:
                cache.put(layer, k, v)
            y = causal_attention(q, k, v, self.dropout if self.training else 0.0)
        else:  # decoding: the new tokens see every cached one, and the earlier of themselves
            k, v = cache.put(layer, k, v)  # (B, nh, L + T, hs)
            mask = None
            if T > 1:
                L = k.size(2) - T
                mask = torch.ones(T, L + T, dtype=torch.bool, device=x.device).tril(diagonal=L)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        y = y.transpose(1, 2).reshape(B, T, C)  # heads side by side again
        return self.resid_dropout(self.c_proj(y))

    def keyed_dropout_attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Causal attention written out, its weights dropped by the keyed CPU masks (layers.DropoutMasks):
        what scaled_dot_product_attention computes with dropout_p, where on the CPU it leaves its flash
        kernel for this same arithmetic with torch's slower masks."""
        B, nh, T, hs = q.shape
        causal = torch.zeros(T, T, dtype=q.dtype, device=q.device).masked_fill_(
            torch.ones(T, T, dtype=torch.bool, device=q.device).triu_(1), float("-inf")
        )  # 0 on and below the diagonal
        att = (
            torch.baddbmm(
                causal.expand(B * nh, T, T),
                q.reshape(B * nh, T, hs),
                k.reshape(B * nh, T, hs).mT,
                alpha=1.0 / math.sqrt(hs),
            )
            .view(B, nh, T, T)
            .softmax(dim=-1)
        )  # scaled, masked, one op
        return self.masks.drop(att, self.dropout) @ v  # (B, nh, T, hs)


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(cfg.n_embd, 4 * cfg.n_embd, bias=cfg.bias)
        self.c_proj = nn.Linear(4 * cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.dropout = KeyedDropout(cfg.dropout)
        self.act = F.gelu if cfg.mlp == "gelu" else relu_squared

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.act(self.c_fc(x))))


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0, rope=None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), cache, layer, rope)  # Pre-LN: the residual stream is never normalised in place
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        cfg.check()
        self.config = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.wpe = nn.Embedding(cfg.block_size, cfg.n_embd) if cfg.pos == "learned" else None
        self.drop = KeyedDropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        if cfg.tie_weights:
            self.lm_head.weight = self.wte.weight
        self.dropout_masks = DropoutMasks()  # keyed by the trainer's step on the CPU; torch's dropout without a key
        for module in self.modules():
            if isinstance(module, (KeyedDropout, CausalSelfAttention)):
                module.masks = self.dropout_masks
        if cfg.pos == "rope":  # angles for every position, computed once; not weights, so not saved
            hs = cfg.n_embd // cfg.n_head
            freq = 1.0 / (10000 ** (torch.arange(0, hs, 2, dtype=torch.float32) / hs))
            angles = torch.outer(torch.arange(cfg.block_size, dtype=torch.float32), freq)  # (block_size, hs / 2)
            self.register_buffer("rope_cos", torch.cat([angles.cos(), angles.cos()], 1), persistent=False)  # (T, hs)
            self.register_buffer("rope_sin", torch.cat([-angles.sin(), angles.sin()], 1), persistent=False)
        if cfg.init != "torch":
            self.apply(self._init_weights)
            for name, p in self.named_parameters():
                if name.endswith("c_proj.weight"):  # residual projections: scaled by depth (GPT-2), or zero
                    if cfg.init == "gpt2":
                        nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))
                    else:
                        nn.init.zeros_(p)
            if cfg.init == "zero" and not cfg.tie_weights:
                nn.init.zeros_(self.lm_head.weight)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def num_params(self, non_embedding: bool = True) -> int:
        n = sum(p.numel() for p in self.parameters())
        return n - self.wpe.weight.numel() if non_embedding and self.wpe is not None else n

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, cache: KVCache | None = None):
        B, T = idx.shape
        indexed = cache is not None and cache.index is not None  # decoding at a position held in a tensor
        # positions continue after what the cache holds; an indexed step never reads cache.pos, so that one
        # captured or compiled step serves every position
        start = cache.pos if cache is not None and not indexed else 0
        if start + T > self.config.block_size:
            raise ValueError(f"{start + T} tokens of context are more than block_size {self.config.block_size}")
        # the positions: a slice, or for indexed decoding the tensor the step reads
        at = cache.index if indexed else slice(start, start + T)
        x = self.wte(idx)  # (B, T, C)
        if indexed:
            cache.set_mask(x.dtype)
        rope = None
        if self.wpe is not None:
            x = x + self.wpe.weight[at]
        else:
            rope = self.rope_cos[at].to(x.dtype), self.rope_sin[at].to(x.dtype)  # (T, hs)
        x = self.drop(x)
        for i, block in enumerate(self.blocks):
            x = block(x, cache, i, rope)
        if cache is not None and not indexed:
            cache.pos += T
        logits = self.lm_head(self.ln_f(x))  # (B, T, vocab)
        if targets is None:
            return logits, None
        loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.reshape(-1))
        return logits, loss

    def flops_per_token(self) -> float:
        """Training FLOPs per token (forward + backward), the PaLM appendix B estimate: 6N + 12 L T C."""
        cfg = self.config
        return 6 * self.num_params() + 12 * cfg.n_layer * cfg.block_size * cfg.n_embd
