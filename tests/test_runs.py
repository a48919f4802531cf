"""minigpt-runs, minigpt-plot and minigpt-train --tensorboard: runs read together, curves drawn from
metrics.jsonl, TensorBoard scalars equal to the metrics rows across a resume."""

import json
from pathlib import Path
import sys

import pytest

from conftest import invoke, metrics, stop_at
from minigpt.data.loader import TokenData
from minigpt.files import folder_lock
from test_train import TINY, run_train


def cli(app: str, *args):
    from minigpt import cli as module

    return invoke(getattr(module, app), *args)


@pytest.fixture(scope="module")
def runs(dataset, tmp_path_factory):
    """Four run folders: finished, stopped by SIGTERM at step 17, damaged, and one another process holds."""
    root = tmp_path_factory.mktemp("runs")
    assert run_train(*TINY, "--data", dataset, "--out", root / "done").exit_code == 0
    with pytest.MonkeyPatch.context() as mp:
        stop_at(mp, 17)
        assert run_train(*TINY, "--lr", 3e-3, "--data", dataset, "--out", root / "stopped").exit_code == 143
    (root / "broken").mkdir()
    (root / "broken" / "config.json").write_text("{not json")
    assert run_train(*TINY, "--max-iters", 5, "--data", dataset, "--out", root / "busy").exit_code == 0
    return root


def test_the_table_and_json_say_each_run_s_state(runs):
    r = cli("runs_app", runs, "--json")
    assert r.exit_code == 0, r.output
    rows = {row["name"]: row for row in map(json.loads, r.stdout.splitlines())}
    done, stopped, broken = rows["done"], rows["stopped"], rows["broken"]
    assert done["state"] == "finished" and (done["step"], done["max_iters"]) == (40, 40)
    assert done["best_val_loss"] == min(m["val_loss"] for m in metrics(runs / "done") if "val_loss" in m)
    assert done["tokens_seen"] == 40 * 16 * 32 and done["params"] > 0 and done["preset"] == "tiny"
    assert done["shape"] == "2x64, 4 heads, block 32" and done["init_from"] is None and done["dataset"] == "ds"
    assert stopped["state"] == "stopped at step 18" and stopped["step"] == 18
    assert broken["state"].startswith("damaged (JSONDecodeError")
    # sorted by best val loss, runs without one (not evaluated yet, damaged) last; plain columns in a pipe
    best = [row["best_val_loss"] for row in rows.values()]
    assert best[:2] == sorted(best[:2]) and None not in best[:2] and best[2:] == [None, None]
    r = cli("runs_app", runs)
    lines = r.stdout.splitlines()
    assert lines[0].split()[:3] == ["name", "state", "dataset"] and "Traceback" not in r.output
    assert any(line.startswith("stopped") and "stopped at step 18" in line and "18/40" in line for line in lines)
    with folder_lock(runs / "busy", "minigpt-train"):
        busy = next(json.loads(line) for line in cli("runs_app", runs / "busy", "--json").stdout.splitlines())
    assert busy["state"] == "running"
    assert_bad = cli("runs_app", runs, "--sort", "speed")
    assert assert_bad.exit_code == 2 and "--sort speed" in assert_bad.output


@pytest.mark.parametrize("x,metric", [("step", "val_loss"), ("tokens", "lr"), ("time", "val_bpc")])
def test_plotted_points_are_the_metrics_rows(runs, tmp_path, x, metric):
    from minigpt.plot import XS, plot

    out = tmp_path / "curves.png"
    fig, path = plot([runs / "done", runs / "stopped"], out, x, metric)
    lines = {line.get_gid(): line for line in fig.axes[0].lines}
    key = XS[x]
    for name in ("done", "stopped"):
        rows = metrics(runs / name)
        if metric == "lr":
            want = [(r[key], r["lr"]) for r in rows]
            got = lines[name]
        else:
            want = [(r[key], r[metric]) for r in rows if metric in r]
            got = lines[f"{name} val"]
            train = lines[f"{name} train"]
            scale = 1 / 0.6931471805599453 if metric == "val_bpc" else 1.0
            assert list(train.get_ydata()) == pytest.approx([r["train_loss"] * scale for r in rows])
        assert list(got.get_xdata()) == pytest.approx([w[0] for w in want])
        assert list(got.get_ydata()) == pytest.approx([w[1] for w in want])
    assert path == out and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_command_svg_default_path_and_errors(runs, tmp_path):
    r = cli("plot_app", runs / "done", "--out", tmp_path / "c.svg")
    assert r.exit_code == 0 and r.stdout.strip() == str(tmp_path / "c.svg"), r.output
    assert b"<svg" in (tmp_path / "c.svg").read_bytes()[:2000]
    r = cli("plot_app", runs / "done")
    assert r.exit_code == 0 and (tmp_path / "runs" / "plot-val_loss-by-step.png").is_file()  # the test's own folder
    for args, needle in (
        ((runs / "done", "--metric", "accuracy"), "--metric accuracy"),
        ((runs / "done", "--x", "epoch"), "--x epoch"),
        ((runs / "done", "--out", tmp_path / "c.jpg"), "extension"),
        ((runs / "broken",), "no metrics.jsonl rows"),
    ):
        r = cli("plot_app", *args)
        assert r.exit_code == 2 and needle in r.output and "Traceback" not in r.output, r.output


def test_tensorboard_scalars_equal_metrics_across_a_resume(dataset, tmp_path, monkeypatch):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    args = (*TINY, "--data", dataset, "--out", run, "--tensorboard")
    original = TokenData.batch

    def crash(self, seed, s, micro, B, T):  # a crash at step 32: steps 25 and 30 were logged after the
        if s == 32:  # step-20 checkpoint, and the resumed run logs them again
            raise RuntimeError("crash")
        return original(self, seed, s, micro, B, T)

    monkeypatch.setattr(TokenData, "batch", crash)
    with pytest.raises(RuntimeError, match="crash"):
        run_train(*args)
    monkeypatch.undo()
    assert run_train(*args, "--resume").exit_code == 0
    events = EventAccumulator(str(run / "tb"))
    events.Reload()
    rows = metrics(run)
    for tag in ("train_loss", "val_loss", "lr", "tokens_seen", "train_eval_loss"):
        want = [(r["step"], r[tag]) for r in rows if tag in r]
        got = [(e.step, e.value) for e in events.Scalars(tag)]
        assert [s for s, _ in got] == [s for s, _ in want], tag  # each step once
        assert [v for _, v in got] == pytest.approx([v for _, v in want], rel=1e-6), tag


def test_tensorboard_missing_is_one_message(dataset, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as without the package
    r = run_train(*TINY, "--data", dataset, "--out", tmp_path / "run", "--tensorboard")
    assert r.exit_code == 2 and "pip install 'minigpt[tensorboard]'" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "run").exists()


def wandb_records(path: Path) -> list:
    """The records of an offline wandb run file (run-ID.wandb): LevelDB's log format, a 7-byte header
    (":W&B", magic, version), then 32 KiB blocks of records (crc32, length, type; FULL or FIRST..LAST)."""
    import struct

    from wandb.proto import wandb_internal_pb2 as pb

    data, pos, out, parts = path.read_bytes(), 7, [], b""
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        if 32768 - pos % 32768 < 7:  # the block's tail is padding
            pos += 32768 - pos % 32768
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        parts += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL or LAST: a whole record
            record = pb.Record()
            record.ParseFromString(parts)
            out.append(record)
            parts = b""
    return out


def test_wandb_logs_every_row_and_a_resume_continues_the_same_run(dataset, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    run = tmp_path / "run"
    args = (*TINY, "--data", dataset, "--out", run, "--wandb", "--wandb-project", "tests")
    with pytest.MonkeyPatch.context() as mp:
        stop_at(mp, 17)
        assert run_train(*args).exit_code == 143
    assert run_train(*args, "--resume").exit_code == 0
    run_id = json.loads((run / "wandb.json").read_text())["id"]
    logged, ids, configs = {}, set(), []
    for path in sorted((run / "wandb").glob("offline-run-*/run-*.wandb")):
        for record in wandb_records(path):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                ids.add(record.run.run_id)
                configs += [
                    json.loads(item.value_json)
                    for item in record.run.config.update
                    if (item.key or "/".join(item.nested_key)) == "model"
                ]
            elif kind == "history":
                items = {
                    item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item
                }
                logged.setdefault(items["_step"], items)
    assert ids == {run_id} and len(list((run / "wandb").glob("offline-run-*"))) == 2  # one wandb run, two sessions
    assert configs and configs[0]["n_embd"] == 64
    rows = metrics(run)
    assert sorted(logged) == [r["step"] for r in rows]
    for r in rows:
        for tag in ("train_loss", "val_loss", "lr", "tokens_seen"):
            if tag in r:
                assert logged[r["step"]][tag] == pytest.approx(r[tag], rel=1e-6), (r["step"], tag)
    assert run_train(*args, "--max-iters", 5, "--force").exit_code == 0  # starting over: another wandb run
    assert json.loads((run / "wandb.json").read_text())["id"] != run_id


def test_wandb_missing_is_one_message(dataset, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)
    r = run_train(*TINY, "--data", dataset, "--out", tmp_path / "run", "--wandb")
    assert r.exit_code == 2 and "pip install 'minigpt[wandb]'" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "run").exists()


@pytest.fixture(scope="module")
def more_runs(dataset, tmp_path_factory):
    """A run stopped at step 17 and resumed to its end (what its first stretch logged, kept); one that crashed
    before its first checkpoint; one whose checkpoint cannot be read."""
    root = tmp_path_factory.mktemp("more-runs")
    with pytest.MonkeyPatch.context() as mp:
        stop_at(mp, 17)
        assert run_train(*TINY, "--data", dataset, "--out", root / "resumed").exit_code == 143
    first = metrics(root / "resumed")
    assert run_train(*TINY, "--data", dataset, "--out", root / "resumed", "--resume").exit_code == 0
    original = TokenData.batch

    def crash(self, seed, s, micro, B, T):
        if s == 3:
            raise RuntimeError("crash")
        return original(self, seed, s, micro, B, T)

    with pytest.MonkeyPatch.context() as mp, pytest.raises(RuntimeError, match="crash"):
        mp.setattr(TokenData, "batch", crash)
        run_train(*TINY, "--data", dataset, "--out", root / "crashed")
    assert run_train(*TINY, "--max-iters", 5, "--data", dataset, "--out", root / "unreadable").exit_code == 0
    (root / "unreadable" / "train_state.pt").write_bytes(b"PK\x03\x04 not a whole checkpoint")
    return root, first


def test_a_resumed_run_s_time_is_the_sum_of_its_stretches(more_runs):
    root, first = more_runs
    row = next(json.loads(line) for line in cli("runs_app", root / "resumed", "--json").stdout.splitlines())
    rows = metrics(root / "resumed")
    assert [r["step"] for r in first] == [5, 10, 15] and rows[2] == first[2]  # the first stretch, kept
    assert [r["step"] for r in rows[3:]] == [20, 25, 30, 35, 40]  # the second stretch, its clock from 0
    want = round(first[-1]["elapsed_s"] + rows[-1]["elapsed_s"], 3)
    assert row["state"] == "finished" and row["train_seconds"] == pytest.approx(want, abs=1e-3)
    assert row["tokens_per_s"] == pytest.approx(40 * 16 * 32 / want, rel=1e-3)


def test_a_resumed_stretch_slower_to_its_first_row_still_adds_up():
    from minigpt.runs import _seconds

    first = [{"step": 5, "elapsed_s": 0.5, "clock_from": 0}, {"step": 10, "elapsed_s": 0.8, "clock_from": 0}]
    second = [{"step": 20, "elapsed_s": 0.9, "clock_from": 17}, {"step": 25, "elapsed_s": 1.2, "clock_from": 17}]
    assert _seconds(first + second) == 2.0  # its clock did not go back, but it started again at step 17
    old = [{k: v for k, v in r.items() if k != "clock_from"} for r in first + second[1:]]
    assert _seconds(old[:2] + [{"step": 20, "elapsed_s": 0.3}]) == 1.1  # rows from before clock_from


def test_runs_that_never_checkpointed_or_cannot_be_read_say_so(more_runs):
    root, _ = more_runs
    rows = {r["name"]: r for r in map(json.loads, cli("runs_app", root, "--json").stdout.splitlines())}
    assert rows["crashed"]["state"] == "no checkpoint yet" and rows["crashed"]["step"] is None
    assert rows["unreadable"]["state"] == "damaged (train_state.pt unreadable)"
    assert rows["unreadable"]["best_val_loss"] is not None  # what its metrics say is still shown


def test_sort_by_time_puts_the_newest_first_and_by_name_alphabetically(more_runs):
    import os

    root, _ = more_runs
    for name, when in (("resumed", 3000), ("crashed", 1000), ("unreadable", 2000)):  # modified at these times
        for f in (root / name).iterdir():
            os.utime(f, (when, when))
    by = {}
    for sort in ("time", "name"):
        r = cli("runs_app", root, "--sort", sort, "--json")
        by[sort] = [json.loads(line)["name"] for line in r.stdout.splitlines()]
    assert by["time"] == ["resumed", "unreadable", "crashed"]
    assert by["name"] == ["crashed", "resumed", "unreadable"]
