"""Faults through the real process: a run folder's lock held by a minigpt-train process for its whole run,
a dataset's by minigpt-prepare's; every durable write flushed before its rename and its folder after; a
full disk and a file size limit met while each checkpoint file is written; a read-only run folder; a
damaged checkpoint on --resume; a damaged metrics line that is not the last; a second Ctrl-C or SIGTERM
inside a step that would not end, inside minigpt-prepare's streaming, and between its two renames."""

import json
import os
import signal
import subprocess
import sys

import pytest
import torch

from conftest import ROOT, invoke, metrics, read_only, run_inprocess, small_disk, stop_at
from test_faults import ARGS, assert_same_run
from test_prepare import files_of
from test_train import TINY, assert_error, run_train

PAUSE_HOOK = """import sys
from minigpt.data.loader import TokenData
from minigpt.data.shards import ShardWriter
command, at = sys.argv[1], int(sys.argv[2])
def pause():
    print("paused", flush=True)
    sys.stdin.readline()  # until the test says go on
real_batch, real_write = TokenData.batch, ShardWriter.write
def batch(self, seed, step, micro, B, T):
    if step == at and micro == 0:
        pause()
    return real_batch(self, seed, step, micro, B, T)
def write(self, tokens, calls=[]):
    calls.append(1)
    if len(calls) == at:
        pause()
    return real_write(self, tokens)
TokenData.batch, ShardWriter.write = batch, write
from minigpt import cli
sys.argv = [command] + sys.argv[3:]
cli.train_cli() if command == "minigpt-train" else cli.prepare_cli()
"""


class Paused:
    """A minigpt command in a process of its own, paused in the middle of its work (minigpt-train inside
    step `at`, minigpt-prepare at its `at`-th shard write) until go()."""

    def __init__(self, command: str, at: int, *args):
        self.p = subprocess.Popen(
            [sys.executable, "-c", PAUSE_HOOK, command, str(at), *map(str, args)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.output = ""
        for line in self.p.stdout:  # by reading, not sleeping: the process says where it is
            self.output += line
            if line.startswith("paused"):
                break
        assert self.p.poll() is None, self.output

    def go(self) -> int:
        out, _ = self.p.communicate("\n", timeout=300)
        self.output += out
        return self.p.returncode


@pytest.fixture(scope="module")
def whole(dataset, tmp_path_factory):
    """An uninterrupted run to compare with."""
    out = tmp_path_factory.mktemp("whole") / "run"
    assert run_train(*ARGS, "--data", dataset, "--out", out).exit_code == 0
    return out


def runs_row(path) -> dict:
    from minigpt.cli import runs_app

    r = invoke(runs_app, path, "--json")
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout.splitlines()[0])


def test_a_training_process_holds_its_run_folder_for_the_whole_run(dataset, tmp_path, mirror):
    run = tmp_path / "run"
    held = Paused("minigpt-train", 25, *ARGS, "--data", dataset, "--out", run)  # after the step-20 checkpoint
    try:
        holder = f"another minigpt-train (pid {held.p.pid}) is writing {run}"
        assert_error(run_train(*ARGS, "--data", dataset, "--out", run, "--resume"), holder, "choose another --out")
        assert_error(run_train(*ARGS, "--data", dataset, "--out", run, "--force"), holder)
        r = run_inprocess("--dataset", mirror, "--docs", 10, "--out", run, "--force")
        assert r.code == 2 and holder in r.stderr, r.output
        assert runs_row(run)["state"] == "running"
        assert torch.load(run / "train_state.pt", weights_only=True)["step"] == 20  # nobody touched it
    finally:
        code = held.go()
    assert code == 0, held.output
    assert runs_row(run)["state"] == "finished" and metrics(run)[-1]["step"] == 40
    assert not list(tmp_path.glob(".run.lock"))  # released, and removed, by its holder


def test_a_prepare_process_holds_its_dataset_folder_until_it_is_done(mirror, tmp_path):
    out = tmp_path / "ds"
    held = Paused("minigpt-prepare", 1, "--dataset", mirror, "--docs", 90, "--val-docs", 12, "--out", out)
    try:
        r = run_inprocess("--dataset", mirror, "--docs", 90, "--val-docs", 12, "--out", out)
        assert r.code == 2 and f"another minigpt-prepare (pid {held.p.pid}) is writing {out}" in r.stderr, r.output
        assert not out.exists()
    finally:
        code = held.go()
    assert code == 0 and (out / "manifest.json").is_file(), held.output


# ---- durability: each file flushed before the rename that publishes it, its folder after ----


@pytest.fixture
def disk_calls(monkeypatch) -> list[tuple]:
    """Every os.fsync (with the path of what it flushed) and os.replace, in order."""
    calls, fsync, replace = [], os.fsync, os.replace

    def recorded_fsync(fd):
        calls.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        return fsync(fd)

    def recorded_replace(src, dst):
        calls.append(("replace", os.fspath(src), os.fspath(dst)))
        return replace(src, dst)

    monkeypatch.setattr(os, "fsync", recorded_fsync)
    monkeypatch.setattr(os, "replace", recorded_replace)
    return calls


def assert_durable(calls: list[tuple], path) -> None:
    """The rename that put `path` in place came after an fsync of the file renamed, and before an fsync of
    its folder."""
    path = os.fspath(path)
    at = max(i for i, c in enumerate(calls) if c[0] == "replace" and c[2] == path)
    src = calls[at][1]
    assert ("fsync", src) in calls[:at], f"{src} was not flushed before it became {path}"
    assert ("fsync", os.path.dirname(path)) in calls[at + 1 :], f"{os.path.dirname(path)} not flushed after {path}"


def test_every_file_of_a_run_is_flushed_before_its_rename_and_its_folder_after(dataset, tmp_path, disk_calls):
    run = tmp_path / "run"
    assert run_train(*TINY, "--max-iters", 10, "--eval-interval", 5, "--data", dataset, "--out", run).exit_code == 0
    for name in ("config.json", "vocab.json", "train_state.pt", "model.safetensors"):
        assert_durable(disk_calls, run / name)


def test_every_file_of_a_dataset_is_flushed_before_the_folder_is_renamed_into_place(mirror, tmp_path, disk_calls):
    out = tmp_path / "ds"
    assert (
        run_inprocess("--dataset", mirror, "--docs", 90, "--val-docs", 12, "--shard-tokens", 3000, "--out", out).code
        == 0
    )
    swap = next(i for i, c in enumerate(disk_calls) if c[0] == "replace" and c[2] == str(out))
    tmp = disk_calls[swap][1]
    before = disk_calls[:swap]
    files = [f for f in [*out.iterdir(), *(out / "raw").iterdir()] if f.is_file()]
    shards = json.loads((out / "manifest.json").read_text())["splits"]
    assert (
        len(files) == 4 + len(shards["train"]["shards"]) + len(shards["val"]["shards"]) > 6
    )  # + raw/, vocab, manifest
    for f in files:
        name = os.path.join(tmp, os.path.relpath(f, out))
        if any(c[0] == "replace" and c[2] == name for c in before):  # written atomically inside it too
            assert_durable(before, name)
        else:
            assert ("fsync", name) in before, f"{f.name} not flushed before the swap"
    assert ("fsync", str(out.parent)) in disk_calls[swap + 1 :]


# ---- a full disk, a file size limit, a read-only folder, a damaged checkpoint ----

FAULT_HOOK = """import errno, os, resource, signal, sys
import minigpt.checkpoint as ck
where, fault, disk = sys.argv[1], sys.argv[2], sys.argv[3]
real = {"state": ck._torch_save, "weights": ck.save_model}
steps = []
def faulty(name):
    def write(obj, path, *a, **k):
        if name == "state":
            steps.append(obj["step"])
        if name != where or steps[-1] != 40:
            return real[name](obj, path, *a, **k)
        if fault == "full":  # the disk fills up, all but 4 KiB, just before this file is written
            st = os.statvfs(disk)
            with open(os.path.join(disk, "filler"), "wb") as f:
                f.write(bytes(st.f_bavail * st.f_frsize - 4096))
            return real[name](obj, path, *a, **k)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the kernel answers EFBIG past the limit
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY))
        return real[name](obj, path, *a, **k)
    return write
ck._torch_save, ck.save_model = faulty("state"), faulty("weights")
from minigpt.cli import train_cli
sys.argv = ["minigpt-train"] + sys.argv[4:]
train_cli()
"""


@pytest.mark.parametrize("fault", ["full", "file-size-limit"])
@pytest.mark.parametrize("where", ["state", "weights"])
def test_a_write_that_fails_inside_a_checkpoint_file_loses_nothing(dataset, tmp_path, whole, where, fault):
    """The step-40 checkpoint meets a full disk (a tmpfs filled for real) or a file size limit (EFBIG from
    the kernel) inside train_state.pt (torch.save) or inside model.safetensors (safetensors): one message,
    exit 2, no temporary file, the last good checkpoint kept; freed, --resume ends where a whole run does."""
    disk = tmp_path / "disk"
    with small_disk(disk) if fault == "full" else _folder(disk):
        run = disk / "run"
        args = [str(a) for a in (*ARGS, "--data", dataset, "--out", run)]
        p = subprocess.run(
            [sys.executable, "-c", FAULT_HOOK, where, fault, str(disk), *args],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=300,
        )
        assert p.returncode == 2 and "Traceback" not in p.stderr and p.stderr.count("error:") == 1, p.stderr
        what = "the disk is full" if fault == "full" else "a file would be larger than this system allows"
        assert f"error: cannot write the run folder {run}: {what}" in p.stderr and "--resume" in p.stderr, p.stderr
        assert not list(run.glob(".*tmp*")), "no temporary file is left behind"
        state = torch.load(run / "train_state.pt", weights_only=True)
        assert state["step"] == (20 if where == "state" else 40)
        (disk / "filler").unlink(missing_ok=True)
        r = run_train(*ARGS, "--data", dataset, "--out", run, "--resume")
        assert r.exit_code == 0, r.output
        assert_same_run(run, whole)


def _folder(path):
    from contextlib import nullcontext

    path.mkdir()
    return nullcontext(path)


def stopped_run(dataset, tmp_path, monkeypatch):
    """A run stopped by SIGTERM inside step 23 (its checkpoint: step 24)."""
    run = tmp_path / "run"
    stop_at(monkeypatch, 23)
    assert run_train(*ARGS, "--data", dataset, "--out", run).exit_code == 143
    monkeypatch.undo()
    return run


def test_a_read_only_run_folder_is_one_message_and_nothing_changes(dataset, tmp_path, monkeypatch, whole):
    run = stopped_run(dataset, tmp_path, monkeypatch)
    before = files_of(run)
    with read_only(run):
        r = run_train(*ARGS, "--data", dataset, "--out", run, "--resume")
        assert_error(r, f"cannot write the run folder {run}: it cannot be written", "--resume")
        assert r.output.count("error:") == 1 and r.exit_code == 2
        r = run_train(*ARGS, "--data", dataset, "--out", run, "--force")
        assert_error(r, f"cannot write the run folder {run}: it cannot be written")
    assert files_of(run) == before
    assert run_train(*ARGS, "--data", dataset, "--out", run, "--resume").exit_code == 0
    assert_same_run(run, whole)


def test_resume_of_a_damaged_checkpoint_is_one_message_and_keeps_the_rest(dataset, tmp_path, monkeypatch):
    run = stopped_run(dataset, tmp_path, monkeypatch)
    state = (run / "train_state.pt").read_bytes()
    (run / "train_state.pt").write_bytes(state[: len(state) // 2])  # cut short, as a copy that stopped
    before = files_of(run)
    r = run_train(*ARGS, "--data", dataset, "--out", run, "--resume")
    assert_error(r, f"--resume: cannot read {run / 'train_state.pt'}", "damaged", "--force")
    assert r.output.count("error:") == 1 and r.exit_code == 2
    assert files_of(run) == before  # the weights and metrics are as they were
    assert runs_row(run)["state"] == "damaged (train_state.pt unreadable)"


def test_a_damaged_metrics_line_that_is_not_the_last_is_refused_with_its_number(dataset, tmp_path, monkeypatch):
    run = stopped_run(dataset, tmp_path, monkeypatch)
    lines = (run / "metrics.jsonl").read_text().splitlines(keepends=True)
    lines[2] = lines[2][: len(lines[2]) // 2] + "\n"  # line 3 of 5, half of it
    (run / "metrics.jsonl").write_text("".join(lines))
    before = files_of(run)
    needle = f"{run / 'metrics.jsonl'}: line 3 is not JSON, and more lines follow it"
    assert_error(run_train(*ARGS, "--data", dataset, "--out", run, "--resume"), needle)
    assert files_of(run) == before  # nothing dropped
    from minigpt.cli import plot_app

    assert_error(invoke(plot_app, run, "--out", tmp_path / "p.png"), needle)
    assert runs_row(run)["state"] == "damaged (metrics.jsonl: line 3 is not JSON, and more lines follow it)"


# ---- a second Ctrl-C or SIGTERM stops at once ----

SLOW_HOOK = """import os, sys
import numpy as np
command, where = sys.argv[1], sys.argv[2]
def slow():
    print("slow", flush=True)
    a = np.ones((6000, 6000))
    a @ a  # one long call: no Python signal handler runs until it returns (a step that would not end)
if where == "step":
    from minigpt.data.loader import TokenData
    real = TokenData.batch
    def batch(self, seed, step, micro, B, T):
        if step == 3 and micro == 0:
            slow()
        return real(self, seed, step, micro, B, T)
    TokenData.batch = batch
elif where == "stream":
    from minigpt.data.shards import ShardWriter
    real = ShardWriter.write
    def write(self, tokens):
        slow()
        return real(self, tokens)
    ShardWriter.write = write
else:  # between minigpt-prepare's two renames
    import minigpt.data.prepare as prep
    real, out = os.replace, os.path.abspath(sys.argv[sys.argv.index("--out") + 1])
    def replace(src, dst):
        real(src, dst)
        if os.fspath(src) == out:  # the old dataset moved aside; the new one not yet in place
            slow()
    prep.os.replace = replace
from minigpt import cli
sys.argv = [command] + sys.argv[3:]
cli.train_cli() if command == "minigpt-train" else cli.prepare_cli()
"""


def twice(sig, command: str, where: str, *args) -> tuple[int, str]:
    """The command, sent `sig` once it is inside its slow call, and again once it has said it got the first
    (two signals sent back to back would reach it as one); its exit code and output."""
    p = subprocess.Popen(
        [sys.executable, "-c", SLOW_HOOK, command, where, *map(str, args)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output = ""
    for wait_for in ("slow", f"{signal.Signals(sig).name}: stopping"):
        for line in p.stdout:  # by reading what it says, not by sleeping
            output += line
            if line.startswith(wait_for):
                break
        p.send_signal(sig)
    out, _ = p.communicate(timeout=300)
    return p.returncode, output + out


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_second_signal_stops_training_at_once_and_says_what_is_kept(dataset, tmp_path, sig):
    run = tmp_path / "run"
    code, output = twice(sig, "minigpt-train", "step", *ARGS, "--eval-interval", 2, "--data", dataset, "--out", run)
    name = signal.Signals(sig).name
    assert code == 128 + sig and "Traceback" not in output, output
    assert f"{name}: stopping at the end of this step, with a checkpoint; Ctrl-C again" in output
    assert (
        f"minigpt: stopped at once by a second {name}; the checkpoint of step 2 in {run} is the one on disk; "
        "nothing after it was saved"
    ) in output, output
    assert torch.load(run / "train_state.pt", weights_only=True)["step"] == 2  # step 3 never ended
    assert runs_row(run)["state"] == "stopped at step 2"
    r = run_train(*ARGS, "--eval-interval", 2, "--data", dataset, "--out", run, "--resume")
    assert r.exit_code == 0 and metrics(run)[-1]["step"] == 40, r.output


def test_a_second_signal_stops_prepare_at_once_and_the_next_run_starts_clean(mirror, tmp_path):
    out = tmp_path / "ds"
    args = ("--dataset", mirror, "--docs", 90, "--val-docs", 12, "--out", out)
    code, output = twice(signal.SIGINT, "minigpt-prepare", "stream", *args)
    assert code == 130 and f"stopped at once by a second SIGINT; {out} is as it was" in output, output
    assert not out.exists() and list(tmp_path.glob(".ds.tmp-*"))  # what it had written, left for the next run
    assert run_inprocess(*args).code == 0 and not list(tmp_path.glob(".ds.*"))


def test_signals_between_prepare_s_two_renames_wait_for_both(mirror, tmp_path):
    out = tmp_path / "ds"
    assert run_inprocess("--dataset", mirror, "--docs", 60, "--val-docs", 12, "--out", out).code == 0
    args = ("--dataset", mirror, "--docs", 90, "--val-docs", 12, "--out", out, "--force")
    code, output = twice(signal.SIGINT, "minigpt-prepare", "swap", *args)
    assert code == 130 and "Traceback" not in output, output
    manifest = json.loads((out / "manifest.json").read_text())  # the new dataset, whole, in place
    assert manifest["splits"]["train"]["docs"] == 90
    assert run_inprocess(*args[:-1]).stdout.count("nothing to do") == 1  # complete; the leftovers cleaned
    assert not list(tmp_path.glob(".ds.*"))
