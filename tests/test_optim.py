"""Muon: batched as torch.optim.Muon, bit for bit; its Newton-Schulz precision per device, and the model's; checkpoints."""

import copy
import io

import pytest
import torch

from minigpt import device as dev
from minigpt.optim import Muon


# ---- Muon's Newton-Schulz precision: the rule, the fp32 path, checkpoints ----

# the model's precision (device.resolve_dtype, --dtype) and Muon's (device.muon_dtype, --muon-dtype)
RULES = {
    "model": (dev.resolve_dtype, dev.BF16_MODEL_MIN_WIDTH, "--dtype", ("float32", "bfloat16", "float16")),
    "muon": (dev.muon_dtype, dev.BF16_NS_MIN_WIDTH, "--muon-dtype", ("float32", "bfloat16")),
}


@pytest.mark.parametrize("which", RULES)
@pytest.mark.parametrize(
    "device,bf16,n_embd,expected",
    [
        ("mps", None, 384, torch.float32),  # not measured faster in bf16
        ("cpu", None, 384, torch.float32),  # no bf16 instructions: a bf16 product is emulated
        ("cpu", "avx512_bf16", "half the threshold", torch.float32),  # bf16 instructions, but too small to pay
        ("cpu", "avx512_bf16", "the threshold", torch.bfloat16),
        ("cpu", "amx_bf16", 384, torch.bfloat16),
    ],
)
def test_precisions_follow_the_device(monkeypatch, which, device, bf16, n_embd, expected):
    rule, threshold, flag, names = RULES[which]
    n_embd = {"half the threshold": threshold // 2, "the threshold": threshold}.get(n_embd, n_embd)
    monkeypatch.setattr(dev, "cpu_bf16", lambda: bf16)
    dtype, why = rule("auto", torch.device(device), n_embd)
    assert dtype == expected and why
    for name in names:  # an explicit choice always wins
        assert rule(name, torch.device(device), n_embd) == (getattr(torch, name), f"{flag} {name}")


def test_muon_iterates_in_bf16_on_cuda_whatever_the_width():
    assert dev.muon_dtype("auto", torch.device("cuda"), 64) == (torch.bfloat16, "CUDA: tensor cores multiply bf16")


def fp32_newton_schulz(grad, ns_coefficients, ns_steps, eps):
    """torch.optim.Muon's iteration (torch/optim/_muon.py) as written, one matrix at a time, in fp32."""
    a, b, c = ns_coefficients
    X = grad.float()
    if grad.size(0) > grad.size(1):
        X = X.T
    X = X.div(X.norm().clamp(min=eps))
    for _ in range(ns_steps):
        A = X @ X.T
        B = torch.addmm(A, A, A, beta=b, alpha=c)
        X = torch.addmm(X, B, X, beta=a)
    return X.T if grad.size(0) > grad.size(1) else X


MUON_KW = dict(lr=0.02, weight_decay=0.1, adjust_lr_fn="match_rms_adamw")


def twin_params() -> tuple[list, list]:
    """Two copies of the same matrices: tall, square and wide, shapes repeated."""
    torch.manual_seed(0)
    shapes = [(48, 16), (16, 16), (64, 16), (16, 64), (48, 16), (64, 16)]
    ours = [torch.nn.Parameter(torch.randn(s) * 0.1) for s in shapes]
    return ours, [torch.nn.Parameter(p.detach().clone()) for p in ours]


def test_fp32_muon_is_an_fp32_reference_of_the_same_iteration_bit_for_bit(monkeypatch):
    import torch.optim._muon as torch_muon

    monkeypatch.setattr(torch_muon, "_zeropower_via_newtonschulz", fp32_newton_schulz)
    ours, theirs = twin_params()
    opt, ref = Muon(ours, ns_dtype=torch.float32, **MUON_KW), torch.optim.Muon(theirs, **MUON_KW)
    start = ours[0].detach().clone()
    for step in range(4):
        step_both(opt, ours, ref, theirs)
        assert all(torch.equal(a, b) for a, b in zip(ours, theirs)), f"step {step}"
    assert not torch.equal(ours[0], start)


def test_the_two_precisions_differ_and_checkpoints_interchange():
    p32, p16 = twin_params()
    fp32, bf16 = Muon(p32, ns_dtype=torch.float32, **MUON_KW), Muon(p16, ns_dtype=torch.bfloat16, **MUON_KW)
    step_both(fp32, p32, bf16, p16)
    assert not all(torch.equal(a, b) for a, b in zip(p32, p16))  # the precision is used
    # a checkpoint of either loads into the other, which keeps its own precision (not part of the state)
    for src, dst, kept in ((bf16, fp32, torch.float32), (fp32, bf16, torch.bfloat16)):
        buf = io.BytesIO()
        torch.save(src.state_dict(), buf)
        buf.seek(0)
        dst.load_state_dict(torch.load(buf, weights_only=True))
        assert dst.ns_dtype == kept
        assert dst.state_dict()["state"].keys() == src.state_dict()["state"].keys()
    assert copy.deepcopy(fp32).ns_dtype == torch.float32  # and a copy keeps it too


def step_both(opt_a, params_a, opt_b, params_b) -> None:
    """One step of two optimizers over twin parameters, with the same random gradients."""
    for a, b in zip(params_a, params_b):
        a.grad = torch.randn_like(a) * 0.01
        b.grad = a.grad.clone()
    opt_a.step()
    opt_b.step()


@pytest.mark.parametrize("nesterov", [True, False])
def test_batched_muon_is_torch_muon_bit_for_bit(nesterov):
    ours, theirs = twin_params()
    kw = dict(MUON_KW, nesterov=nesterov)
    opt, ref = Muon(ours, ns_dtype=torch.bfloat16, **kw), torch.optim.Muon(theirs, **kw)  # torch.optim.Muon: bf16
    start = ours[0].detach().clone()
    for step in range(4):
        step_both(opt, ours, ref, theirs)
        assert all(torch.equal(a, b) for a, b in zip(ours, theirs)), f"step {step}"
        if step == 1:  # the states interchange: a checkpoint of either resumes in the other
            opt.load_state_dict(copy.deepcopy(ref.state_dict()))  # a copy, as a checkpoint file would be
    assert not torch.equal(ours[0], start)  # the parameters did move


def test_muon_reads_a_tensor_learning_rate_as_a_cuda_graph_needs():
    torch.manual_seed(0)
    shapes = [(48, 16), (16, 64), (48, 16)]
    floats = [torch.nn.Parameter(torch.randn(s) * 0.1) for s in shapes]
    tensors = [torch.nn.Parameter(p.detach().clone()) for p in floats]
    a, b = Muon(floats, lr=0.02, adjust_lr_fn="match_rms_adamw"), Muon(tensors, lr=0.02, adjust_lr_fn="match_rms_adamw")
    b.param_groups[0]["lr"] = torch.tensor(0.02)
    start = floats[0].detach().clone()
    for _ in range(3):
        step_both(a, floats, b, tensors)
    assert all(torch.allclose(x, y, rtol=1e-6, atol=1e-8) for x, y in zip(floats, tensors))
    assert not torch.allclose(floats[0], start, rtol=1e-3)  # the weights did move
