"""Batched decoding: one step over the rows of many streams, each row in a slot of one shared KV cache.

A server decodes the requests that overlap in time together (continuous batching, scheduler.py): each
request holds a slot; its prompt is prefilled alone, into its slot, and then every step runs one token
of every active row. At minigpt's sizes a one-token step costs mostly its ~170 operations' dispatch, so
a step over 16 rows costs little more than a step over one (BENCHMARKS.md, minigpt-serve).

On the CPU a row's logits are `decode.CPUDecode`'s for the same stream, bit for bit (a test checks it at
every batch size up to 64), so a seeded request gets the text minigpt-sample prints, alone or among
others. That needs every operation to compute a row the way a batch of one does:
- the products: `CPUDecodeLinear`'s slabs, one `bmm` per slab whose batch is the rows, each row a
  one-row product as in the single stream (a product over several rows at once rounds differently);
- attention: one call per row over that row's own positions, as the single stream makes it (calls
  over several rows, or over the whole window with a mask, round differently);
- the norms, the rotary embedding, the activations and the residual adds work row by row anyway.
Elsewhere (CUDA, MPS, or without the CPU layout) the products take all rows at once: the same model,
its logits equal to the single stream's to float rounding, not bit for bit.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from .kernels import CPUDecodeLinear
from .model import GPT, KVCache, rotary


def slot_cache(cache: KVCache, slot: int) -> KVCache:
    """A batch-1 KVCache that is a view of one slot of `cache`: what the model writes there lands in the slot."""
    view = KVCache.__new__(KVCache)
    view.k = [k[slot : slot + 1] for k in cache.k]
    view.v = [v[slot : slot + 1] for v in cache.v]
    view.pos, view.index, view.mask = 0, None, None
    return view


def rows_linear(layer: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """layer(x) for x (B, in), each row computed as a batch of one would be (CPUDecodeLinear: per slab, a
    bmm over the rows against the slab, not copied; stride 0 across rows). Other layers: layer(x)."""
    if not isinstance(layer, CPUDecodeLinear):
        return layer(x)
    parts, k, out_features = layer.slabs.shape
    B = x.size(0)
    xs = x.view(B, parts, 1, k)
    y = torch.bmm(xs[:, 0], layer.slabs[0].expand(B, k, out_features))  # (B, 1, out)
    for j in range(1, parts):  # the single row's .sum(0) over the slabs, in the same order
        y = y + torch.bmm(xs[:, j], layer.slabs[j].expand(B, k, out_features))
    y = y.view(B, out_features)
    return y if layer.bias is None else y + layer.bias


def rows_head(model: GPT, x: torch.Tensor) -> torch.Tensor:
    """The output head over rows (B, C): one bmm whose batch is the rows, each a one-row product like the
    single stream's; off the CPU, the plain product. (B, vocab)."""
    if x.device.type != "cpu":
        return model.lm_head(x)
    W = model.lm_head.weight  # (vocab, C)
    return torch.bmm(x.unsqueeze(1), W.t().expand(x.size(0), *W.t().shape)).squeeze(1)


class BatchedDecode:
    """A KV cache of `slots` rows and the step that runs one token of any set of them."""

    def __init__(self, model: GPT, device: torch.device, slots: int):
        self.model, self.device, self.slots = model, device, slots
        self.cache = KVCache(model.config, slots, device)
        self.pos = [0] * slots  # positions filled, per slot

    @torch.inference_mode()
    def prefill(self, slot: int, tokens: list[int]) -> torch.Tensor:
        """The slot's cache filled from `tokens` (at most block_size) by the model's forward, batch 1, as the
        single stream's prefill does: the logits (1, vocab) after the last one."""
        view = slot_cache(self.cache, slot)
        logits = self.model(torch.tensor([tokens], device=self.device), cache=view)[0][:, -1]
        self.pos[slot] = view.pos
        return logits

    @torch.inference_mode()
    def step(self, slots: list[int], tokens: list[int]) -> torch.Tensor:
        """One token for each of `slots`, at each slot's position: the logits (len(slots), vocab), row i for slots[i].
        decode.CPUDecode's arithmetic, op for op, over rows."""
        m, cache = self.model, self.cache
        C, nh = m.config.n_embd, m.config.n_head
        hs, B = C // nh, len(slots)
        pos = [self.pos[s] for s in slots]
        at = torch.tensor(pos, device=self.device)
        rows = torch.tensor(slots, device=self.device)
        x = m.wte.weight[torch.tensor(tokens, device=self.device)]  # (B, C)
        if m.wpe is not None:
            x = x + m.wpe.weight[at]
        else:
            rope = m.rope_cos[at].view(B, 1, 1, hs), m.rope_sin[at].view(B, 1, 1, hs)
        for i, block in enumerate(m.blocks):
            attn, mlp, ln = block.attn, block.mlp, block.ln_1
            qkv = rows_linear(attn.c_attn, F.layer_norm(x, ln.normalized_shape, ln.weight, ln.bias, ln.eps))
            qkv = qkv.view(B, 3, nh, hs)
            qk, v = qkv[:, :2], qkv[:, 2]
            if attn.qk_norm:
                qk = F.rms_norm(qk, (hs,))
            if m.wpe is None:
                qk = rotary(qk, *rope)
            cache.k[i][rows, :, at], cache.v[i][rows, :, at] = qk[:, 1], v  # (B, nh, hs) into each slot
            y = torch.cat(
                [
                    F.scaled_dot_product_attention(
                        qk[r, 0].view(1, nh, 1, hs),
                        cache.k[i][s : s + 1, :, : p + 1],
                        cache.v[i][s : s + 1, :, : p + 1],
                    ).view(1, C)
                    for r, (s, p) in enumerate(zip(slots, pos))
                ]
            )  # (B, C)
            x = x + rows_linear(attn.c_proj, y)
            ln = block.ln_2
            h = F.layer_norm(x, ln.normalized_shape, ln.weight, ln.bias, ln.eps)
            x = x + rows_linear(mlp.c_proj, mlp.act(rows_linear(mlp.c_fc, h)))
        for s in slots:
            self.pos[s] += 1
        return rows_head(m, m.ln_f(x))
