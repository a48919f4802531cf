"""minigpt-train under torchrun on the CPU: two gloo processes, the same windows and losses as one."""

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from c4mirror import make_docs, write_c4_mirror
from conftest import invoke, metrics, run_inprocess
from minigpt.checkpoint import TIMING_FIELDS

TINY = ("--preset", "tiny", "--eval-tokens", 2048, "--log-interval", 5)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ddp-data")
    mirror = write_c4_mirror(root / "mirror", [make_docs(150, seed=41)], [make_docs(30, seed=42)])
    r = run_inprocess(
        "--dataset", mirror, "--docs", 150, "--val-docs", 30, "--shard-tokens", 8000, "--out", root / "ds"
    )
    assert r.code == 0, r.output
    return root / "ds"


def torchrun(*args, nproc: int = 2, wait: bool = True):
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        "-m",
        "minigpt.train",
        *[str(a) for a in args],
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if not wait:
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


def train_here(*args):
    from minigpt.cli import train_app

    r = invoke(train_app, *args)
    assert r.exit_code == 0, r.output
    return r


def assert_same_losses(a: list[dict], b: list[dict], rel: float) -> None:
    assert [r["step"] for r in a] == [r["step"] for r in b]
    for x, y in zip(a, b):
        assert y.keys() == x.keys()
        for k in x:
            if k not in TIMING_FIELDS:
                assert y[k] == pytest.approx(x[k], rel=rel), (x["step"], k)


def test_two_processes_train_exactly_like_one_with_the_same_accumulation(dataset, tmp_path):
    """2 ranks x 2 micro-batches each draw the 4 micro-batches of one process with --grad-accum 4, and the
    same dropout masks (keyed by step and micro-batch). Muon's iteration runs in fp32 at this width on every
    CPU, so only the order of the gradient sums differs: losses agree to ~1e-7, the bound is 1e-5."""
    args = (
        *TINY,
        "--max-iters",
        30,
        "--eval-interval",
        15,
        "--grad-accum",
        4,
        "--lr",
        1e-3,
        "--dropout",
        0.1,
        "--data",
        dataset,
    )
    train_here(*args, "--out", tmp_path / "one")
    r = torchrun(*args, "--out", tmp_path / "two")
    assert r.returncode == 0, r.stdout + r.stderr
    assert_same_losses(metrics(tmp_path / "one"), metrics(tmp_path / "two"), rel=1e-5)
    one, two = load_file(tmp_path / "one" / "model.safetensors"), load_file(tmp_path / "two" / "model.safetensors")
    assert all(torch.allclose(one[k], two[k], rtol=0, atol=1e-4) for k in one)
    # rank 0 alone speaks and writes: one summary, one line per logged step, no stray temporary files
    assert r.stdout.count("finished 30 steps") == 1 and r.stdout.count("step     15/30") == 1, r.stdout
    assert len(metrics(tmp_path / "two")) == 30 // 5
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(p.name for p in (tmp_path / "one").iterdir())


def test_fine_tuning_under_torchrun_trains_like_one_process(dataset, tmp_path):
    """--init-from under torchrun: every rank loads the source run's weights, and two processes fine-tune as one."""
    train_here(*TINY, "--max-iters", 20, "--eval-interval", 20, "--data", dataset, "--out", tmp_path / "base")
    args = (
        *TINY,
        "--max-iters",
        20,
        "--eval-interval",
        10,
        "--grad-accum",
        2,
        "--lr",
        1e-3,
        "--data",
        dataset,
        "--init-from",
        tmp_path / "base",
    )
    train_here(*args, "--out", tmp_path / "one")
    r = torchrun(*args, "--out", tmp_path / "two")
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("starting from the weights of") == 1, r.stdout
    assert_same_losses(metrics(tmp_path / "one"), metrics(tmp_path / "two"), rel=1e-5)


def _rank_pids(parent: int) -> dict[int, int]:
    """{rank: pid} of torchrun's worker processes, read from /proc."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            env = dict(kv.split("=", 1) for kv in (entry / "environ").read_text().split("\0") if "=" in kv)
        except (OSError, ValueError, IndexError):
            continue
        if ppid == parent and "RANK" in env:
            found[int(env["RANK"])] = int(entry.name)
    return found


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the ranks' processes through /proc")
def test_sigterm_to_one_rank_stops_both_with_a_checkpoint_and_resume_ends_identical(dataset, tmp_path):
    args = (*TINY, "--max-iters", 400, "--eval-interval", 100, "--grad-accum", 2, "--dropout", 0.1, "--data", dataset)
    r = torchrun(*args, "--out", tmp_path / "whole")
    assert r.returncode == 0, r.stdout + r.stderr

    p = torchrun(*args, "--out", tmp_path / "parts", wait=False)
    for line in p.stdout:  # rank 0's first log line: both ranks are in the training loop
        if line.startswith("step"):
            break
    os.kill(_rank_pids(p.pid)[1], signal.SIGTERM)  # rank 1 only, the one that prints nothing
    out, err = p.communicate(timeout=300)
    assert p.returncode != 0 and "stopped by SIGTERM" in out, out + err
    step = torch.load(tmp_path / "parts" / "train_state.pt", weights_only=True)["step"]
    assert 0 < step < 400

    r = torchrun(*args, "--out", tmp_path / "parts", "--resume")
    assert r.returncode == 0 and f"resuming {tmp_path / 'parts'} at step {step}" in r.stdout, r.stdout + r.stderr
    assert (tmp_path / "parts" / "model.safetensors").read_bytes() == (
        tmp_path / "whole" / "model.safetensors"
    ).read_bytes()
    assert_same_losses(metrics(tmp_path / "whole"), metrics(tmp_path / "parts"), rel=0)


def test_world_size_must_divide_the_micro_batches(dataset, tmp_path):
    r = torchrun(*TINY, "--grad-accum", 3, "--data", dataset, "--out", tmp_path / "run")
    assert r.returncode != 0
    assert r.stderr.count("--grad-accum 3 cannot be shared among 2 processes") == 1, r.stderr
    assert "e.g. 2" in r.stderr and not (tmp_path / "run" / "train_state.pt").exists()


def test_nccl_without_cuda(dataset, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    r = torchrun(*TINY, "--backend", "nccl", "--data", dataset, "--out", tmp_path / "run", nproc=1)
    assert r.returncode != 0 and "--backend nccl needs CUDA" in r.stderr, r.stderr
    assert "minigpt/" not in r.stderr  # no traceback of ours (torchrun adds its own report)


def test_a_rank_that_cannot_reach_the_others_says_so(dataset, tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **os.environ,
        "RANK": "1",
        "LOCAL_RANK": "1",
        "WORLD_SIZE": "2",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
    }
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "minigpt.train",
            *map(str, TINY),
            "--data",
            str(dataset),
            "--out",
            str(tmp_path / "run"),
            "--dist-timeout",
            "1",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert f"rank 1 of 2 could not reach the other processes at 127.0.0.1:{port} within 1 s" in r.stderr
    assert "--dist-timeout" in r.stderr


def test_an_error_rank_0_finds_stops_every_rank_with_one_message(dataset, tmp_path):
    """Only rank 0 looks at the run folder; the others must not wait for it in a collective."""
    train_here(*TINY, "--max-iters", 5, "--eval-interval", 5, "--data", dataset, "--out", tmp_path / "run")
    r = torchrun(
        *TINY, "--max-iters", 5, "--eval-interval", 5, "--grad-accum", 2, "--data", dataset, "--out", tmp_path / "run"
    )
    assert r.returncode != 0
    assert r.stderr.count("already holds a finished run") == 1 and "--force" in r.stderr, r.stderr
