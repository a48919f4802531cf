"""The unchanged hub code path, `load_dataset("allenai/c4", "en", streaming=True)`, against a fake hub
on 127.0.0.1 (HF_ENDPOINT): same dataset as the local paths, faults retried, reruns offline, signals."""

import json
import os
import signal
import socket
import subprocess
import sys

import pytest

from conftest import ROOT, hub_env, run_inprocess, run_subprocess
from fakehub import FakeHub
from test_prepare import assert_clean_error, files_of

ARGS = ("--docs", 90, "--val-docs", 12)


@pytest.fixture
def local_build(mirror, tmp_path):
    out = tmp_path / "local"
    assert run_inprocess("--dataset", mirror, *ARGS, "--out", out).code == 0
    return out


def assert_same_dataset(a, b):
    fa, fb = files_of(a), files_of(b)
    assert fa.keys() == fb.keys()
    for name in fa:
        if name != "manifest.json":
            assert fa[name] == fb[name], name
    ma, mb = json.loads(fa["manifest.json"]), json.loads(fb["manifest.json"])
    assert ma["splits"] == mb["splits"] and ma["vocab_sha256"] == mb["vocab_sha256"]
    for split in ("train", "val"):
        ta, tb = (p / "raw" / f"{split}.parquet" for p in (a, b))
        import pyarrow.parquet as pq

        assert pq.read_table(ta).equals(pq.read_table(tb))


def test_hub_path_gives_the_same_dataset_as_the_local_paths(mirror, tmp_path, local_build):
    out = tmp_path / "hub"
    with FakeHub(mirror) as hub:
        r = run_subprocess(*ARGS, "--out", out, env=hub_env(hub.url))
        requests = hub.requests
    assert r.code == 0, r.output
    assert_same_dataset(local_build, out)
    m = json.loads((out / "manifest.json").read_text())
    assert m["source"]["dataset"] == "allenai/c4" and m["source"]["config"] == "en"
    paths = [p for _, p, _ in requests]
    assert any(p.startswith("/api/datasets/allenai/c4/revision/") for p in paths)
    assert any(p.startswith("/api/datasets/allenai/c4/tree/") for p in paths)
    data = [(p, status) for method, p, status in requests if method == "GET" and ".json.gz" in p]
    assert {p.rsplit("/", 1)[-1] for p, _ in data} == {
        "c4-train.00000-of-01024.json.gz",
        "c4-train.00001-of-01024.json.gz",
        "c4-validation.00000-of-00008.json.gz",
    }
    assert all(status == 206 for _, status in data)  # Range requests


def test_transient_faults_are_retried_and_the_slice_is_identical(mirror, tmp_path, local_build):
    out = tmp_path / "hub"
    with FakeHub(mirror, fail_429=1, fail_5xx=1, drop_at_byte=3000, drop_file_substring="c4-train.00001") as hub:
        r = run_subprocess(*ARGS, "--out", out, env=hub_env(hub.url))
        served = dict(hub.faults_served)
    assert r.code == 0, r.output
    assert served == {"429": 1, "5xx": 1, "drop": 1}
    assert_same_dataset(local_build, out)


def test_reruns_never_touch_the_network(mirror, tmp_path):
    out = tmp_path / "hub"
    with FakeHub(mirror) as hub:
        assert run_subprocess(*ARGS, "--out", out, env=hub_env(hub.url)).code == 0
        dead = hub.url
    # the hub is gone: a connection would be refused and retried for ~20 s before failing
    env = hub_env(dead)
    r = run_subprocess(*ARGS, "--out", out, env=env)
    assert r.code == 0 and "nothing to do" in r.stdout, r.output
    r = run_subprocess(*ARGS, "--out", out, "--min-count", 2, "--shard-tokens", 3000, env=env)
    assert r.code == 0 and "rebuilt from raw/" in r.stdout, r.output
    m = json.loads((out / "manifest.json").read_text())
    assert m["build"] == {"min_count": 2, "max_vocab": None, "shard_tokens": 3000, "vocab": None, "vocab_sha256": None}
    assert len(m["splits"]["train"]["shards"]) > 1
    assert "Retrying" not in r.stderr


def test_hub_unreachable_offline(tmp_path):
    r = run_inprocess("--docs", 10, "--out", tmp_path / "ds")  # conftest sets HF_HUB_OFFLINE=1
    assert_clean_error(
        r, "cannot reach the Hugging Face Hub", "HF_HUB_OFFLINE", "--data-files", "HF_ENDPOINT", out=tmp_path / "ds"
    )


def test_hub_unreachable_connection_refused(tmp_path):
    with socket.socket() as s:  # a port where nothing listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = run_subprocess("--docs", 10, "--out", tmp_path / "ds", env=hub_env(f"http://127.0.0.1:{port}"))
    assert_clean_error(r, "cannot reach the Hugging Face Hub for allenai/c4", "--dataset DIR", out=tmp_path / "ds")
    assert not (tmp_path / "ds").exists()


def test_persistent_server_errors_end_with_a_clear_message(mirror, tmp_path):
    with FakeHub(mirror, fail_5xx=100) as hub:
        r = run_subprocess(*ARGS, "--out", tmp_path / "ds", env=hub_env(hub.url))
    assert_clean_error(r, "kept failing", "503", out=tmp_path / "ds")
    assert not (tmp_path / "ds").exists() and os.listdir(tmp_path) == ["mirror"]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_mid_stream_leaves_nothing(mirror, tmp_path, sig):
    out = tmp_path / "ds"
    with FakeHub(mirror) as hub:
        hub.hold = True
        p = subprocess.Popen(
            [sys.executable, str(ROOT / "prepare.py"), *map(str, ARGS), "--out", str(out)],
            env=hub_env(hub.url),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert hub.held.wait(120), "the client never asked for a data file"
        assert list(tmp_path.glob(".ds.tmp-*")), "the run is writing into its temporary folder"
        p.send_signal(sig)
        hub.release.set()
        _, err = p.communicate(timeout=120)
    assert p.returncode == 128 + sig and "Traceback" not in err and "nothing half-written" in err
    assert not out.exists() and os.listdir(tmp_path) == ["mirror"]


def test_killed_run_leaves_nothing_complete_and_the_next_run_starts_clean(mirror, tmp_path, local_build):
    out = tmp_path / "ds"
    with FakeHub(mirror) as hub:
        hub.hold = True
        p = subprocess.Popen(
            [sys.executable, str(ROOT / "prepare.py"), *map(str, ARGS), "--out", str(out)],
            env=hub_env(hub.url),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        assert hub.held.wait(120)
        p.kill()
        p.wait(timeout=60)
        hub.release.set()
        left = list(tmp_path.glob(".ds.tmp-*"))
        assert left and not out.exists()  # the leftover is hidden and has no manifest: nothing looks complete
        assert not list(left[0].rglob("manifest.json"))
        hub.hold = False
        r = run_subprocess(*ARGS, "--out", out, env=hub_env(hub.url))
    assert r.code == 0, r.output
    assert not list(tmp_path.glob(".ds.tmp-*"))
    assert_same_dataset(local_build, out)
