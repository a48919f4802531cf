"""The old gpt.py's recipe, reimplemented faithfully for bench/quality_bench.py (never used by minigpt).

Model: token embedding (nn.Embedding, default N(0, 1) init) plus a learned position embedding; each
block: per head, bias-free Linear(n_embd, head_size) for key, query and value, scores q @ k^T *
head_size**-0.5, causal mask, softmax, dropout on the weights, times v; heads concatenated and NO
output projection (gpt.py defined one and never applied it; it is defined here too, unused);
x = LayerNorm(x + attention(x)) (Post-LN); then Linear(n_embd, 4 n_embd), ReLU, Linear(4 n_embd,
n_embd), dropout; x = LayerNorm(x + mlp(x)). A final LayerNorm, an untied Linear(n_embd, vocab) head
with bias, cross-entropy. PyTorch's default init everywhere.
Training: torch.optim.AdamW(lr) with its defaults (betas 0.9/0.999, weight decay 0.01 on every
parameter), constant lr, no clipping, fp32, batches of uniformly random windows.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch.nn import functional as F


class Head(nn.Module):
    def __init__(self, n_embd: int, head_size: int, block_size: int, dropout: float):
        super().__init__()
        self.key = nn.Linear(n_embd, head_size, bias=False)
        self.query = nn.Linear(n_embd, head_size, bias=False)
        self.value = nn.Linear(n_embd, head_size, bias=False)
        self.register_buffer("tril", torch.tril(torch.ones(block_size, block_size)))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        k, q = self.key(x), self.query(x)  # (B, T, hs)
        wei = q @ k.transpose(-2, -1) * k.shape[-1] ** -0.5  # (B, T, T)
        wei = wei.masked_fill(self.tril[:T, :T] == 0, float("-inf"))
        wei = self.dropout(F.softmax(wei, dim=-1))
        return wei @ self.value(x)  # (B, T, hs)


class MultiHeadAttention(nn.Module):
    def __init__(self, n_embd: int, n_head: int, block_size: int, dropout: float):
        super().__init__()
        self.heads = nn.ModuleList(Head(n_embd, n_embd // n_head, block_size, dropout) for _ in range(n_head))
        self.proj = nn.Linear(n_embd, n_embd)  # defined, never applied: the old script's defect
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([h(x) for h in self.heads], dim=-1)


class FeedForward(nn.Module):
    def __init__(self, n_embd: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(n_embd, 4 * n_embd), nn.ReLU(), nn.Linear(4 * n_embd, n_embd), nn.Dropout(dropout)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Block(nn.Module):
    def __init__(self, n_embd: int, n_head: int, block_size: int, dropout: float):
        super().__init__()
        self.sa = MultiHeadAttention(n_embd, n_head, block_size, dropout)
        self.ffwd = FeedForward(n_embd, dropout)
        self.ln1, self.ln2 = nn.LayerNorm(n_embd), nn.LayerNorm(n_embd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.ln1(x + self.sa(x))  # Post-LN
        return self.ln2(x + self.ffwd(x))


class OldGPT(nn.Module):
    def __init__(self, vocab_size: int, n_embd: int, n_head: int, n_layer: int, block_size: int, dropout: float):
        super().__init__()
        self.token_embedding_table = nn.Embedding(vocab_size, n_embd)
        self.position_embedding_table = nn.Embedding(block_size, n_embd)
        self.blocks = nn.Sequential(*[Block(n_embd, n_head, block_size, dropout) for _ in range(n_layer)])
        self.ln_f = nn.LayerNorm(n_embd)
        self.lm_head = nn.Linear(n_embd, vocab_size)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        B, T = idx.shape
        x = self.token_embedding_table(idx) + self.position_embedding_table(torch.arange(T, device=idx.device))
        logits = self.lm_head(self.ln_f(self.blocks(x)))  # (B, T, vocab)
        if targets is None:
            return logits, None
        return logits, F.cross_entropy(logits.view(B * T, -1), targets.reshape(B * T))


def train_old(
    dataset,
    vocab_size: int,
    n_embd: int,
    n_head: int,
    n_layer: int,
    block_size: int,
    batch_size: int,
    steps: int,
    lr: float,
    dropout: float,
    seed: int,
    device: torch.device,
    compile: bool = False,
) -> OldGPT:
    """The old training loop: constant lr, AdamW defaults, no clipping, fp32. Batches are drawn with
    minigpt's keyed draw, so both recipes see exactly the same windows in the same order. `compile`
    (CUDA) only makes it faster: torch.compile with CUDA graphs computes the same function."""
    torch.manual_seed(seed)
    model = OldGPT(vocab_size, n_embd, n_head, n_layer, block_size, dropout).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    run = torch.compile(model, mode="reduce-overhead") if compile else model
    model.train()
    for step in range(steps):
        batch = torch.from_numpy(dataset.batch(seed, step, 0, batch_size, block_size)).to(device)
        if compile:
            torch.compiler.cudagraph_mark_step_begin()
        _, loss = run(batch[:, :-1], batch[:, 1:])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return model
