"""modeling_minigpt.py of an exported folder: minigpt's GPT for transformers (trust_remote_code=True).

minigpt-export copies this file into the folder (its config.json's auto_map names it), so that
transformers loads a run whose model has no native class (the default recipe: RoPE, per-head
RMS-normalised queries and keys, ReLU², a tied head) with no minigpt installed. It needs only torch and
transformers, and computes model.py's forward op for op (a test checks the logits against minigpt's).
Each call runs the whole window (no KV cache: `generate` recomputes it, as minigpt's old sampler did).
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch.nn import functional as F
from transformers import GenerationMixin, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutput


class MiniGPTConfig(PretrainedConfig):
    model_type = "minigpt"

    def __init__(
        self,
        vocab_size: int = 256,
        block_size: int = 64,
        n_layer: int = 8,
        n_head: int = 8,
        n_embd: int = 384,
        bias: bool = False,
        mlp: str = "relu2",
        pos: str = "rope",
        qk_norm: bool = True,
        tie_word_embeddings: bool = True,
        **kwargs,
    ):
        self.vocab_size, self.block_size = vocab_size, block_size
        self.n_layer, self.n_head, self.n_embd = n_layer, n_head, n_embd
        self.bias, self.mlp, self.pos, self.qk_norm = bias, mlp, pos, qk_norm
        super().__init__(tie_word_embeddings=tie_word_embeddings, **kwargs)


def rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """model.rotary: pairs of channels (first half, second half) rotated; sin holds -sin, then sin."""
    return x * cos + x.roll(x.size(-1) // 2, dims=-1) * sin


class Attention(nn.Module):
    def __init__(self, cfg: MiniGPTConfig):
        super().__init__()
        self.n_head, self.qk_norm = cfg.n_head, cfg.qk_norm
        self.c_attn = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=cfg.bias)
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)

    def forward(self, x: torch.Tensor, rope) -> torch.Tensor:
        B, T, C = x.shape
        hs = C // self.n_head
        qkv = self.c_attn(x).view(B, T, 3, self.n_head, hs).permute(2, 0, 3, 1, 4)  # (3, B, nh, T, hs)
        qk, v = qkv[:2], qkv[2]
        if self.qk_norm:
            qk = F.rms_norm(qk, (hs,))
        if rope is not None:
            qk = rotary(qk, *rope)
        q, k = qk.unbind(0)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, nh, T, hs)
        return self.c_proj(y.transpose(1, 2).reshape(B, T, C))


class MLP(nn.Module):
    def __init__(self, cfg: MiniGPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(cfg.n_embd, 4 * cfg.n_embd, bias=cfg.bias)
        self.c_proj = nn.Linear(4 * cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.gelu = cfg.mlp == "gelu"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.c_fc(x)
        return self.c_proj(F.gelu(h) if self.gelu else F.relu(h).square())


class Block(nn.Module):
    """Pre-LN, the names of model.py's modules, so that minigpt's state dict loads as it is."""

    def __init__(self, cfg: MiniGPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.attn = Attention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor, rope) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), rope)
        return x + self.mlp(self.ln_2(x))


class MiniGPTForCausalLM(PreTrainedModel, GenerationMixin):
    config_class = MiniGPTConfig
    base_model_prefix = "minigpt"
    _tied_weights_keys = {"lm_head.weight": "wte.weight"}

    def __init__(self, config: MiniGPTConfig):
        super().__init__(config)
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.block_size, config.n_embd) if config.pos == "learned" else None
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.post_init()

    def rope(self, T: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """model.py's angles for positions 0..T-1 (made per call: transformers builds models on the meta
        device, where buffers that are not saved would be left unset). (T, hs) cosines, (T, hs) sines."""
        hs = self.config.n_embd // self.config.n_head
        freq = 1.0 / (10000 ** (torch.arange(0, hs, 2, dtype=torch.float32, device=device) / hs))
        angles = torch.outer(torch.arange(T, dtype=torch.float32, device=device), freq)  # (T, hs / 2)
        return torch.cat([angles.cos(), angles.cos()], 1), torch.cat([-angles.sin(), angles.sin()], 1)

    def _init_weights(self, module: nn.Module) -> None:
        """Only for weights the checkpoint lacks (none, for an exported run): GPT-2's N(0, 0.02)."""
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.wte

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def forward(self, input_ids: torch.LongTensor, labels: torch.LongTensor | None = None, **kwargs) -> CausalLMOutput:
        B, T = input_ids.shape
        if T > self.config.block_size:
            raise ValueError(f"{T} tokens are more than the model's window of {self.config.block_size}")
        x = self.wte(input_ids)  # (B, T, C)
        rope = None
        if self.wpe is not None:
            x = x + self.wpe.weight[:T]
        else:
            rope = tuple(t.to(x.dtype) for t in self.rope(T, x.device))
        for block in self.blocks:
            x = block(x, rope)
        logits = self.lm_head(self.ln_f(x))  # (B, T, vocab)
        loss = None
        if labels is not None:  # transformers' convention: labels are the inputs, shifted here
            loss = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(), ignore_index=-100)
        return CausalLMOutput(loss=loss, logits=logits)
