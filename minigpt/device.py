"""Devices: which one a command runs on, in which precision, and what the host's CPU can do.

The trainer, the engine and the benches share these; nothing here imports another minigpt module
but errors.py.
"""

from __future__ import annotations

import ctypes
import platform
import sys
from functools import lru_cache

import torch

from .errors import UserError

# Peak dense bf16 tensor FLOP/s (no sparsity) from the vendors' data sheets, for MFU.
PEAK_FLOPS = {
    "H200": 989e12,
    "H100 NVL": 835e12,
    "H100 PCIe": 756e12,
    "H100": 989e12,
    "A100": 312e12,
    "L40S": 362e12,
    "A10G": 70e12,
    "L4": 121e12,
    "RTX 4090": 165e12,
    "RTX 3090": 71e12,
    "V100": 125e12,
}

# The CPU flags that tell how fast matrix products can run; the benches print them with every figure.
ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_tile", "asimd", "sve", "bf16")
BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # x86 instructions that multiply bf16 natively
# Muon's Newton-Schulz iteration in bf16 on a CPU with those instructions, from this width of the blocks'
# matrices (n_embd) up: below it bf16 did not win (bench/cpu_bench.py --ns; BENCHMARKS.md)
BF16_NS_MIN_WIDTH = 96
# The model under bf16 autocast on such a CPU, from this width up (weights, optimizer and loss stay fp32;
# attention runs in fp32, model.causal_attention): narrower, it gained too little to give up fp32's exact
# agreement of two processes with one (tests/test_ddp.py; BENCHMARKS.md)
BF16_MODEL_MIN_WIDTH = 96


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(
            f"--device {name}, but this torch has no CUDA device available",
            "use --device auto (or cpu); check `nvidia-smi` and that torch was installed with CUDA",
        )
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UserError("--device mps, but MPS is not available here", "use --device auto (or cpu)")
    try:
        return torch.device(name)
    except RuntimeError:
        raise UserError(f"--device {name}: not a device torch knows", "use auto, cpu, cuda, cuda:N or mps") from None


def resolve_dtype(name: str, device: torch.device, n_embd: int) -> tuple[torch.dtype, str]:
    """The precision of the model's forward and backward passes (autocast), and why. Chosen once per run.
    On a CPU: bf16 from n_embd BF16_MODEL_MIN_WIDTH up where the CPU multiplies bf16 natively, fp32
    elsewhere; runs stay exactly reproducible in either."""
    if name != "auto":
        return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name], f"--dtype {name}"
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return torch.bfloat16, "CUDA: tensor cores multiply bf16"
        return torch.float16, "CUDA without bf16"
    if device.type == "cpu":
        return _cpu_bf16_rule(n_embd, BF16_MODEL_MIN_WIDTH, f"width {n_embd} is")
    return torch.float32, f"{device.type}: not measured faster in bf16"


def muon_dtype(name: str, device: torch.device, n_embd: int) -> tuple[torch.dtype, str]:
    """The precision of Muon's Newton-Schulz iteration, and why: bf16 where the hardware multiplies
    bf16 fast, fp32 elsewhere. Chosen once per run (the trainer records it in config.json).

    On a CPU without bf16 instructions a bf16 product is emulated: the iteration then cost several times
    the model's own step, and two processes under torchrun drifted from one (BENCHMARKS.md)."""
    if name != "auto":
        return {"bfloat16": torch.bfloat16, "float32": torch.float32}[name], f"--muon-dtype {name}"
    if device.type == "cuda":
        return torch.bfloat16, "CUDA: tensor cores multiply bf16"
    if device.type == "cpu":
        return _cpu_bf16_rule(n_embd, BF16_NS_MIN_WIDTH, f"matrices of width {n_embd} are")
    return torch.float32, f"{device.type}: not measured faster in bf16"


def _cpu_bf16_rule(n_embd: int, min_width: int, subject: str) -> tuple[torch.dtype, str]:
    """bf16 where this CPU multiplies bf16 natively and n_embd reaches min_width, fp32 elsewhere; and why."""
    native = cpu_bf16()
    if native and n_embd >= min_width:
        return torch.bfloat16, f"this CPU multiplies bf16 natively ({native})"
    if native:
        return torch.float32, f"{subject} too small for bf16 to pay (from {min_width})"
    return torch.float32, "this CPU has no bf16 instructions"


def peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_FLOPS.items() if k in name), None)


@lru_cache(maxsize=1)
def _cpuinfo() -> tuple[str, frozenset, str]:
    """The CPU's model name, flags and vendor, from /proc/cpuinfo (Linux) or sysctl (macOS)."""
    name, flags, vendor = platform.processor() or platform.machine(), set(), ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key in ("model name", "Model") and value.strip():
                    name = value.strip()
                elif key in ("flags", "Features"):
                    flags.update(value.split())
                elif key == "vendor_id":
                    vendor = value.strip()
    except OSError:
        if sys.platform == "darwin":
            name, flags = _sysctl_cpu()
    return name, frozenset(flags), vendor


def _sysctl_cpu() -> tuple[str, set]:
    import subprocess

    def get(key: str) -> str:
        try:
            return subprocess.run(["sysctl", "-n", key], capture_output=True, text=True, timeout=5).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    flags = {"bf16"} if get("hw.optional.arm.FEAT_BF16") == "1" else set()
    return get("machdep.cpu.brand_string") or platform.machine(), flags


def cpu_name() -> str:
    return _cpuinfo()[0]


def cpu_vendor() -> str:
    """GenuineIntel, AuthenticAMD, ... on x86; empty elsewhere."""
    return _cpuinfo()[2]


def cpu_flags() -> list[str]:
    """The flags of ISA_FLAGS that this CPU reports."""
    return [f for f in ISA_FLAGS if f in _cpuinfo()[1]]


def cpu_bf16() -> str | None:
    """The x86 flag by which this CPU multiplies bf16 natively, or None. (ARM's bf16 extension is not
    used: nothing here measured torch's bf16 products on it.)"""
    return next((f for f in BF16_FLAGS if f in _cpuinfo()[1]), None)


def describe(device: torch.device) -> str:
    """The device in words, for start-up lines and benches."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "cpu":
        return f"{cpu_name()}, {torch.get_num_threads()} threads"
    return device.type


# glibc's mallopt parameters
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3


@lru_cache(maxsize=1)
def keep_freed_memory() -> bool:
    """Let glibc's malloc keep freed memory for the next allocation instead of giving it back to the system.

    A CPU training step frees and allocates the same activation-sized buffers every step. By default glibc
    serves blocks above its mmap threshold (128 KiB, raised as large blocks are freed, at most 32 MiB)
    with a fresh mmap, unmaps them when freed and trims the heap's top, so every step touches new pages
    that the kernel must fault in and zero: 554-2,118 page faults a step for a plain GPT's step at
    4 x 128, batch 12, and 10-14 with this setting (bench/cpu_bench.py --kernels, BENCHMARKS.md).
    True where the setting took (glibc); elsewhere nothing changes."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        # no mmap below 1 GiB: the heap serves it (glibc before 2.35 allows at most 32 MiB)
        ok = libc.mallopt(M_MMAP_THRESHOLD, 1 << 30) == 1 or libc.mallopt(M_MMAP_THRESHOLD, 32 << 20) == 1
        ok &= libc.mallopt(M_TRIM_THRESHOLD, (1 << 31) - 1) == 1  # and keeps what was freed
        ok &= libc.mallopt(M_TOP_PAD, 64 << 20) == 1  # grow the heap 64 MiB at a time
        return bool(ok)
    except (OSError, AttributeError):  # not glibc (musl, ...)
        return False
