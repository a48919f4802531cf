"""minigpt-serve: the API against the app (httpx through Starlette's TestClient) and against a real
uvicorn process on a free loopback port, concurrency, disconnects, a full queue, every bad request,
the CLI's errors and Ctrl-C, and the playground page in a real browser (Debian's chromium)."""

import asyncio
import json
import re
import shutil
import signal
import socket
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

from conftest import invoke, run_inprocess
from c4mirror import make_docs, write_c4_mirror
from minigpt.engine import Engine
from minigpt.server import MAX_BODY_BYTES, create_app

BROWSER = "/usr/bin/chromium"
BROWSER_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """A folder of runs: `tiny` (trained for 150 steps, a few seconds) and `damaged` (its config.json cut)."""
    from minigpt.cli import train_app

    root = tmp_path_factory.mktemp("serve")
    mirror = write_c4_mirror(root / "mirror", [make_docs(150, seed=31)], [make_docs(20, seed=32)])
    assert run_inprocess("--dataset", mirror, "--docs", 150, "--val-docs", 20, "--out", root / "ds").code == 0
    r = invoke(
        train_app, "--preset", "tiny", "--max-iters", 150, "--data", root / "ds", "--out", root / "runs" / "tiny"
    )
    assert r.exit_code == 0, r.output
    shutil.copytree(root / "runs" / "tiny", root / "runs" / "damaged")
    (root / "runs" / "damaged" / "config.json").write_text('{"model": {"n_layer"')
    return root / "runs"


@pytest.fixture(scope="module")
def engine(runs) -> Engine:
    return Engine.load(runs / "tiny")


@pytest.fixture(scope="module")
def client(runs):
    with TestClient(create_app([runs], device="cpu", max_tokens=1000)) as c:
        yield c


def sample(engine: Engine, prompt: str, n: int = 1, **settings) -> list[str]:
    """What minigpt-sample prints after the prompt, sample by sample."""
    from minigpt.engine import SamplingParams

    ids, _ = engine.encode_prompt(prompt)
    params = SamplingParams(settings.get("temperature", 0.8), settings.get("top_k"), settings.get("top_p"))
    out = engine.samples(
        ids, n, settings.get("max_tokens", 200), params, settings["seed"], settings.get("stop_at_eot", False)
    )
    return ["".join(pieces) for pieces in out]


def events(text: str) -> list:
    """The data of a server-sent event stream, [DONE] included."""
    return [line[6:] if line == "data: [DONE]" else json.loads(line[6:]) for line in text.split("\n\n") if line]


# ---- the API, against the app ----


def test_models_health_page_and_runs(client):
    models = client.get("/v1/models").json()
    assert models["object"] == "list" and [m["id"] for m in models["data"]] == ["damaged", "tiny"]
    assert all(m["object"] == "model" and m["owned_by"] == "minigpt" for m in models["data"])
    assert client.get("/health").json()["status"] == "ok"
    page = client.get("/")
    assert page.status_code == 200 and 'id="generate"' in page.text and "<script" in page.text
    assert "http" not in re.sub(r"https?://(www\.)?w3\.org\S*", "", page.text.split("<body")[0])  # no CDN
    rows = {r["id"]: r for r in client.get("/api/runs").json()["runs"]}
    assert rows["tiny"]["state"] == "finished" and rows["tiny"]["best_val_loss"] > 0
    assert rows["damaged"]["state"].startswith("damaged")
    metrics = client.get("/api/runs/tiny/metrics").json()["rows"]
    assert metrics[-1]["step"] == 150 and any("val_loss" in r for r in metrics)


@pytest.mark.parametrize(
    "settings",
    [
        dict(seed=3),
        dict(seed=4, temperature=0.0, max_tokens=80),
        dict(seed=5, temperature=1.1, top_k=7, top_p=0.9, max_tokens=120),
    ],
)
def test_a_seeded_completion_is_minigpt_samples_text(client, engine, settings):
    body = {"model": "tiny", "prompt": "The market", **settings}
    r = client.post("/v1/completions", json=body)
    assert r.status_code == 200, r.text
    answer = r.json()
    (choice,) = answer["choices"]
    assert choice["text"] == sample(engine, "The market", **settings)[0]
    assert answer["object"] == "text_completion" and answer["model"] == "tiny" and answer["seed"] == settings["seed"]
    assert choice["finish_reason"] == "length" and choice["index"] == 0
    n = settings.get("max_tokens", 200)
    assert answer["usage"] == {"prompt_tokens": 11, "completion_tokens": n, "total_tokens": 11 + n}


def test_streaming_sends_the_same_text_in_pieces_then_done(client, engine):
    body = {"model": "tiny", "prompt": "The", "seed": 9, "max_tokens": 60, "stream": True}
    body["stream_options"] = {"include_usage": True}
    with client.stream("POST", "/v1/completions", json=body) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        got = events(r.read().decode())
    assert got[-1] == "[DONE]" and got[-2]["usage"]["completion_tokens"] == 60
    chunks = got[:-2]
    assert "".join(c["choices"][0]["text"] for c in chunks) == sample(engine, "The", seed=9, max_tokens=60)[0]
    assert [c["choices"][0]["finish_reason"] for c in chunks][-1] == "length"
    assert all(c["object"] == "text_completion" for c in chunks) and len(chunks) > 1


def test_n_samples_echo_and_stop_strings(client, engine):
    r = client.post("/v1/completions", json={"model": "tiny", "prompt": "A", "n": 3, "seed": 2, "max_tokens": 40})
    assert [c["text"] for c in r.json()["choices"]] == sample(engine, "A", 3, seed=2, max_tokens=40)  # --num-samples 3
    free = sample(engine, "A", seed=2, max_tokens=40)[0]
    stop = free[15:17]
    r = client.post(
        "/v1/completions",
        json={"model": "tiny", "prompt": "A", "seed": 2, "max_tokens": 40, "stop": [stop, "@@"], "echo": True},
    )
    (choice,) = r.json()["choices"]
    assert choice["text"] == "A" + free[: free.index(stop)] and choice["finish_reason"] == "stop"


def test_a_prompt_list_of_one_and_unknown_characters_allowed(client, engine):
    r = client.post("/v1/completions", json={"model": "tiny", "prompt": ["The"], "seed": 1, "max_tokens": 20})
    assert r.json()["choices"][0]["text"] == sample(engine, "The", seed=1, max_tokens=20)[0]
    r = client.post(
        "/v1/completions", json={"model": "tiny", "prompt": "The ☃", "seed": 1, "max_tokens": 20, "allow_unk": True}
    )
    assert r.status_code == 200 and len(r.json()["choices"][0]["text"]) == 20


BAD = [
    ({"model": "nope"}, 404, "model", "no model 'nope' here (models: damaged, tiny)"),
    (
        {"model": "tiny", "temperature": -1},
        400,
        "temperature",
        "temperature: Input should be greater than or equal to 0",
    ),
    ({"model": "tiny", "top_p": 1.5}, 400, "top_p", "top_p: Input should be less than or equal to 1"),
    ({"model": "tiny", "top_k": 0}, 400, "top_k", "top_k: Input should be greater than or equal to 1"),
    ({"model": "tiny", "max_tokens": 0}, 400, "max_tokens", "max_tokens: Input should be greater than or equal to 1"),
    (
        {"model": "tiny", "max_tokens": 1001},
        400,
        "max_tokens",
        "max_tokens 1001 is more than this server's limit of 1000",
    ),
    ({"model": "tiny", "max_tokens": "many"}, 400, "max_tokens", "max_tokens: Input should be a valid integer"),
    ({"prompt": "x"}, 400, "model", "model: Field required"),
    ({"model": "tiny", "n": 17}, 400, "n", "n: Input should be less than or equal to 16"),
    ({"model": "tiny", "stop": ["a", "b", "c", "d", "e"]}, 400, "stop", "stop: at most 4 strings, none empty"),
    ({"model": "tiny", "prompt": ["a", "b"]}, 400, "prompt", "prompt: one prompt per request (got a list of 2)"),
    ({"model": "tiny", "logprobs": 2}, 400, "logprobs", "logprobs is not supported by minigpt-serve"),
    (
        {"model": "tiny", "prompt": "Good, 日本"},
        400,
        "prompt",
        "the prompt has 2 character(s) outside the vocabulary of this run: '日', '本'",
    ),
    ({"model": "damaged"}, 422, "model", "the run damaged cannot be loaded: "),
]


@pytest.mark.parametrize("body, status, param, message", BAD, ids=[b[3][:30] for b in BAD])
def test_a_bad_request_gets_openais_error_shape(client, body, status, param, message):
    for stream in (False, True):
        r = client.post("/v1/completions", json={**body, "stream": stream})
        assert r.status_code == status, r.text
        error = r.json()["error"]
        assert set(error) == {"message", "type", "param", "code"} and error["type"] == "invalid_request_error"
        assert error["param"] == param and error["message"].startswith(message), error["message"]
        assert "Traceback" not in r.text


def test_broken_json_a_huge_body_and_unknown_routes(client):
    r = client.post("/v1/completions", content=b'{"model": "tiny",', headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["message"].startswith("the body is not valid JSON")
    r = client.post(
        "/v1/completions", content=b" " * (MAX_BODY_BYTES + 1), headers={"content-type": "application/json"}
    )
    assert r.status_code == 413 and "more than" in r.json()["error"]["message"]
    r = client.get("/v2/nothing")
    assert r.status_code == 404 and r.json()["error"]["message"] == "no such endpoint: /v2/nothing"
    r = client.get("/v1/completions")
    assert r.status_code == 405 and "error" in r.json()
    r = client.get("/api/runs/nope/metrics")
    assert r.status_code == 404 and r.json()["error"]["param"] == "model"


# ---- a real server process ----


@contextmanager
def server(*args: str):
    """minigpt-serve on a free loopback port: its address, and the process."""
    cmd = [sys.executable, "-c", "from minigpt.cli import serve_cli; serve_cli()", *args, "--port", "0"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    line = proc.stderr.readline()
    found = re.search(r"at (http://127\.0\.0\.1:\d+)/ ", line)
    try:
        assert found, line + proc.stderr.read()
        yield found.group(1), proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=30)


async def stream_text(http: httpx.AsyncClient, url: str, body: dict) -> str:
    text = []
    async with http.stream("POST", f"{url}/v1/completions", json={**body, "stream": True}) as r:
        assert r.status_code == 200
        async for line in r.aiter_lines():
            if line.startswith("data: {"):
                text.append(json.loads(line[6:])["choices"][0]["text"])
    return "".join(text)


def test_sixteen_clients_at_once_each_get_their_solo_text(runs, engine):
    prompts = ["", "The ", "In the morning, ", "Prices rose"]
    bodies = [{"model": "tiny", "prompt": prompts[i % 4], "seed": i, "max_tokens": 100} for i in range(16)]

    async def all_at_once(url):
        async with httpx.AsyncClient(timeout=120) as http:
            return await asyncio.gather(*(stream_text(http, url, b) for b in bodies))

    with server(str(runs / "tiny")) as (url, _):
        texts = asyncio.run(all_at_once(url))
    assert texts == [sample(engine, b["prompt"], seed=b["seed"], max_tokens=100)[0] for b in bodies]


def test_a_client_that_disconnects_frees_its_slot_and_a_full_queue_says_retry(runs, engine):
    # one slot, no queue: while a request of a million tokens holds the slot, another is refused; once
    # its client goes, the next request gets the slot (it would wait for hours if the first went on)
    async def scenario(url):
        async with httpx.AsyncClient(timeout=60) as http:
            body = {"model": "tiny", "prompt": "The", "max_tokens": 1_000_000, "stream": True}
            async with http.stream("POST", f"{url}/v1/completions", json=body) as r:
                lines = r.aiter_lines()  # held: a dropped iterator could close the stream as it is collected
                async for line in lines:
                    if line.startswith("data: {"):
                        break  # decoding: the slot is taken
                full = await http.post(f"{url}/v1/completions", json={"model": "tiny", "max_tokens": 5})
            # the stream is closed; the server notices, cancels it, and the slot is free again
            for _ in range(10_000):
                if (await http.get(f"{url}/health")).json()["loaded"]["tiny"]["active"] == 0:
                    break
            after = await stream_text(http, url, {"model": "tiny", "prompt": "The", "seed": 1, "max_tokens": 50})
            return full, after

    with server(str(runs / "tiny"), "--batch", "1", "--queue", "0", "--max-tokens", "1000000") as (url, _):
        full, after = asyncio.run(scenario(url))
    assert full.status_code == 429 and full.headers["retry-after"] == "1"
    assert full.json()["error"]["code"] == "queue_full"
    assert after == sample(engine, "The", seed=1, max_tokens=50)[0]


def test_a_non_streaming_client_that_disconnects_frees_its_slot(runs, engine):
    def active(url) -> int:
        return httpx.get(f"{url}/health").json()["loaded"].get("tiny", {}).get("active", 0)

    with server(str(runs / "tiny"), "--batch", "1", "--queue", "0", "--max-tokens", "1000000") as (url, _):
        host, port = url.removeprefix("http://").split(":")
        body = json.dumps({"model": "tiny", "max_tokens": 1_000_000}).encode()
        head = f"POST /v1/completions HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        sock = socket.create_connection((host, int(port)))
        sock.sendall(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
        for _ in range(10_000):  # the model loads, then the request holds the one slot
            if active(url) == 1:
                break
        sock.close()  # gone before its answer: the server cancels it
        for _ in range(10_000):
            if active(url) == 0:
                break
        r = httpx.post(f"{url}/v1/completions", json={"model": "tiny", "prompt": "The", "seed": 1, "max_tokens": 50})
    assert r.status_code == 200 and r.json()["choices"][0]["text"] == sample(engine, "The", seed=1, max_tokens=50)[0]


def test_ctrl_c_stops_the_server_with_130_and_bad_starts_are_one_message(runs, tmp_path):
    with server(str(runs / "tiny")) as (url, proc):
        assert httpx.get(f"{url}/health").json()["status"] == "ok"
        port = url.rsplit(":", 1)[1]
        taken = subprocess.run(
            [
                sys.executable,
                "-c",
                "from minigpt.cli import serve_cli; serve_cli()",
                str(runs / "tiny"),
                "--port",
                port,
            ],
            capture_output=True,
            text=True,
        )
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 130
        assert "minigpt: interrupted" in proc.stderr.read()
    assert taken.returncode == 2 and f"error: cannot listen on 127.0.0.1:{port}: Address already in use" in taken.stderr
    assert "Traceback" not in taken.stderr
    from minigpt.cli import serve_app

    r = invoke(serve_app, str(tmp_path / "missing"))
    assert r.exit_code == 2 and "missing: no such folder" in r.stderr
    for parent in ("a", "b"):
        shutil.copytree(runs / "tiny", tmp_path / parent / "tiny")
    r = invoke(serve_app, str(tmp_path / "a" / "tiny"), str(tmp_path / "b"))
    assert r.exit_code == 2 and "two runs are named tiny" in r.stderr
    r = invoke(serve_app, str(runs), "--batch", "0")
    assert r.exit_code == 2 and "--batch, --max-tokens and --threads must be at least 1" in r.stderr


def test_without_fastapi_minigpt_serve_says_what_to_install(runs):
    code = "import sys; sys.modules['fastapi'] = None; from minigpt.cli import serve_cli; sys.argv[1:] = [sys.argv[1]]; serve_cli()"
    r = subprocess.run([sys.executable, "-c", code, str(runs)], capture_output=True, text=True)
    assert r.returncode == 2 and "minigpt-serve needs FastAPI and uvicorn" in r.stderr
    assert "pip install 'minigpt[serve]'" in r.stderr and "Traceback" not in r.stderr


# ---- the page, in a real browser ----


@pytest.mark.skipif(not Path(BROWSER).exists(), reason="Debian's chromium is not installed (.ci/run installs it)")
def test_the_playground_streams_minigpt_samples_text_and_stops(runs, engine):
    from playwright.sync_api import sync_playwright

    errors = []
    with server(str(runs)) as (url, _), sync_playwright() as p:
        browser = p.chromium.launch(executable_path=BROWSER, args=BROWSER_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url + "/")
        page.wait_for_selector("#card dd")
        page.wait_for_selector("#curve path")
        assert page.input_value("#run") == "tiny"  # the damaged run is listed but cannot be picked
        assert page.is_disabled("#run option[value='damaged']")
        assert "150 / 150" in page.inner_text("#card")
        page.fill("#prompt", "The market")
        page.fill("#seed", "7")
        page.fill("#max-tokens", "120")
        page.click("#generate")
        page.wait_for_selector('#status[data-state="done"]', timeout=60_000)
        assert page.text_content("#completion") == sample(engine, "The market", seed=7, max_tokens=120)[0]
        assert "seed 7" in page.text_content("#status")
        page.fill("#max-tokens", "4000")
        page.fill("#seed", "")
        page.click("#generate")
        page.wait_for_function("document.getElementById('completion').textContent.length > 20")
        page.click("#stop")
        page.wait_for_selector('#status[data-state="stopped"]', timeout=10_000)
        assert 20 < len(page.text_content("#completion")) < 4000
        page.fill("#prompt", "日本")
        page.click("#generate")
        page.wait_for_selector('#status[data-state="error"]', timeout=10_000)
        assert "outside the vocabulary" in page.text_content("#status")
        browser.close()
    assert errors == []
