"""The CPU training path (minigpt/kernels.py, minigpt/layers.py): oneDNN's Linear, keyed dropout masks, ReLU squared."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from minigpt.kernels import OneDNNLinear, onednn_layout, onednn_usable
from minigpt.layers import DropoutMasks, KeyedDropout, relu_squared
from minigpt.model import GPT, CausalSelfAttention, GPTConfig


# ---- oneDNN's Linear ----


@pytest.mark.skipif(not onednn_usable(), reason="oneDNN's linear op is not usable in this torch")
@pytest.mark.parametrize("bias", [False, True])
def test_onednn_linear_gives_nn_linears_values_and_gradients(bias):
    torch.manual_seed(0)
    plain = torch.nn.Linear(48, 80, bias=bias)
    fast = onednn_layout(copy.deepcopy(torch.nn.Sequential(plain)))[0]
    assert type(fast) is OneDNNLinear and fast.state_dict().keys() == plain.state_dict().keys()
    x = torch.randn(3, 7, 48, requires_grad=True)
    x2 = x.detach().clone().requires_grad_()
    g = torch.randn(3, 7, 80)
    plain(x).backward(g)
    y = fast(x2)
    y.backward(g)
    assert torch.allclose(y, plain(x), rtol=1e-5, atol=1e-5)
    assert torch.allclose(x2.grad, x.grad, rtol=1e-5, atol=1e-5)
    for p, q in zip(fast.parameters(), plain.parameters()):
        assert torch.allclose(p.grad, q.grad, rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(not onednn_usable(), reason="oneDNN's linear op is not usable in this torch")
def test_onednn_layout_keeps_the_tied_head_and_the_loss():
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=50, block_size=16, n_layer=2, n_head=4, n_embd=32, dropout=0.0)
    model = GPT(cfg)
    fast = onednn_layout(copy.deepcopy(model))
    assert fast.lm_head.weight is fast.wte.weight and isinstance(fast.blocks[0].mlp.c_fc, OneDNNLinear)
    x = torch.randint(0, 50, (4, 16))
    assert torch.allclose(fast(x, x)[1], model(x, x)[1], rtol=1e-5)


# ---- keyed dropout masks ----


def factors(masks: DropoutMasks, shape, p: float, dtype: torch.dtype) -> torch.Tensor:
    """The next mask as factors: 0 where dropped, 1 / (1 - p) where kept."""
    kept, scale = masks.kept(shape, p)
    return kept.to(dtype).mul_(scale)


def test_dropout_masks_are_keyed_and_drop_p_of_the_elements():
    masks = DropoutMasks()
    masks.key(seed=7, step=3, micro=1)
    a, a2 = factors(masks, (64, 1000), 0.2, torch.float32), factors(masks, (64, 1000), 0.2, torch.float32)
    assert not torch.equal(a, a2)  # each draw goes on in the stream
    masks.key(seed=7, step=3, micro=1)
    assert torch.equal(factors(masks, (64, 1000), 0.2, torch.float32), a)  # the same key: the same masks
    for other in (dict(seed=8, step=3, micro=1), dict(seed=7, step=4, micro=1), dict(seed=7, step=3, micro=0)):
        masks.key(**other)
        assert not torch.equal(factors(masks, (64, 1000), 0.2, torch.float32), a)
    kept = 65536 / (65536 - round(0.2 * 65536))
    assert a.unique().tolist() == pytest.approx([0.0, kept])
    assert (a == 0).float().mean().item() == pytest.approx(0.2, abs=0.005)
    assert a.mean().item() == pytest.approx(1.0, abs=0.02)  # the expectation is kept


def test_keyed_dropout_is_torchs_without_a_key_and_on_in_training_only():
    drop = KeyedDropout(0.5)
    drop.masks = DropoutMasks()
    x = torch.ones(1000)
    torch.manual_seed(0)
    unkeyed = drop(x)
    torch.manual_seed(0)
    assert torch.equal(unkeyed, F.dropout(x, 0.5, True))  # no key: torch's own dropout
    drop.masks.key(1, 0, 0)
    keyed = drop(x)
    drop.masks.key(1, 0, 0)
    assert torch.equal(keyed, x * factors(drop.masks, x.shape, 0.5, x.dtype))
    assert torch.equal(drop.eval()(x), x)


def test_keyed_dropout_in_bf16_scales_by_the_unrounded_factor():
    """Under bf16 autocast the kept values are x / (1 - p) rounded once, as torch's dropout gives them, not
    x times 1 / (1 - p) rounded to bf16 first (1/0.9 is 1.109 in bf16)."""
    masks, x = DropoutMasks(), torch.randn(4096).bfloat16()
    masks.key(3, 1, 0)
    dropped = masks.drop(x, 0.1)
    masks.key(3, 1, 0)
    fp32 = factors(masks, x.shape, 0.1, torch.float32)  # 0 or 1 / (1 - p), in fp32
    assert dropped.dtype == torch.bfloat16
    assert torch.equal(dropped, (x.float() * fp32).bfloat16())
    masks.key(3, 1, 0)
    assert not torch.equal(dropped, x * factors(masks, x.shape, 0.1, torch.bfloat16))  # what rounding first gave


def test_attention_with_keyed_dropout_is_the_attention_of_its_mask():
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=50, block_size=16, n_layer=1, n_head=4, n_embd=32, dropout=0.25)
    attn = CausalSelfAttention(cfg).train()
    attn.masks = DropoutMasks()
    q, k, v = (torch.randn(2, 4, 16, 8) for _ in range(3))
    attn.masks.key(5, 2, 0)
    y = attn.keyed_dropout_attention(q, k, v)
    attn.masks.key(5, 2, 0)
    mask = factors(attn.masks, (2, 4, 16, 16), 0.25, torch.float32)
    weights = F.scaled_dot_product_attention(q, k, torch.eye(16).expand(2, 4, 16, 16), is_causal=True)  # softmax(QK^T)
    assert torch.allclose(y, (weights * mask) @ v, atol=1e-5)
    # and with nothing dropped it is scaled_dot_product_attention
    attn.masks.kept = lambda shape, p: (torch.ones(shape, dtype=torch.bool), 1.0)
    assert torch.allclose(
        attn.keyed_dropout_attention(q, k, v), F.scaled_dot_product_attention(q, k, v, is_causal=True), atol=1e-5
    )


def test_the_models_dropout_masks_follow_the_key_alone():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=50, block_size=16, n_layer=2, n_head=4, n_embd=32, dropout=0.3)).train()
    x = torch.randint(0, 50, (4, 16))
    losses = []
    for seed in (1, 2, 1):  # torch's RNG drawn in between changes nothing
        torch.manual_seed(seed)
        model.dropout_masks.key(9, 4, 0)
        losses.append(model(x, x)[1].item())
        model.dropout_masks.clear()
    assert losses[0] == losses[2] == losses[1]
    model.dropout_masks.key(9, 5, 0)
    assert model(x, x)[1].item() != losses[0]
    model.dropout_masks.clear()
    assert not math.isnan(model.eval()(x, x)[1].item())


# ---- ReLU squared ----


def test_relu_squared_has_autograds_values_and_gradients_bit_for_bit():
    torch.manual_seed(0)
    h = torch.randn(6, 32, 96, requires_grad=True)
    h2 = h.detach().clone().requires_grad_()
    g = torch.randn(6, 32, 96)
    y = relu_squared(h)
    y.backward(g)
    ref = torch.relu(h2).square()
    ref.backward(g)
    assert torch.equal(y, ref) and torch.equal(h.grad, h2.grad)
    assert torch.autograd.gradcheck(relu_squared, (torch.randn(4, 5, dtype=torch.float64, requires_grad=True),))


def test_attention_under_cpu_bf16_autocast_runs_in_fp32():
    """torch's bf16 CPU attention kernel was several times slower than fp32's: under CPU autocast the model's
    attention takes fp32 copies of q, k, v, and gives their fp32 result; gradients reach the bf16 inputs."""
    from minigpt.model import causal_attention

    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 4, 16, 8).bfloat16().requires_grad_() for _ in range(3))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = causal_attention(q, k, v, 0.0)
    assert y.dtype == torch.float32
    assert torch.equal(y, F.scaled_dot_product_attention(q.float(), k.float(), v.float(), is_causal=True))
    y.sum().backward()
    assert q.grad.dtype == torch.bfloat16 and q.grad.abs().sum() > 0
    assert causal_attention(q, k, v, 0.0).dtype == torch.bfloat16  # without autocast, as given
