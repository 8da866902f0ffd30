"""The inference pool under stress: a full queue, a killed worker, a vanished client, residency."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import httpx

from inference.registry import Catalogue
from tests.conftest import MODEL, Server, add_model, run_vagt, write_catalogue

LONG = {"model": MODEL, "prompt": "Write a very long essay about the history of ships.",
        "options": {"num_predict": 4000, "temperature": 0.9}}


def _stream_lines(server: Server, body: dict[str, object], lines: list[dict[str, object]],
                  stop_after: int | None = None) -> None:
    with httpx.Client(base_url=server.url, timeout=120, headers=server.auth) as http, \
            http.stream("POST", "/api/generate", json=body) as response:
        for line in response.iter_lines():
            if line:
                lines.append(json.loads(line))
            if stop_after is not None and len(lines) >= stop_after:
                return


def _wait_for(condition: object, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.02)
    return False


def test_full_queue_is_refused_at_once_with_retry_after(
    start_server: type[Server], data_dir: Path,
) -> None:
    server = start_server(data_dir, "--workers", "1", "--max-queue", "1", "--threads", "1")
    busy: list[dict[str, object]] = []
    queued: list[dict[str, object]] = []
    first = threading.Thread(target=_stream_lines, args=(
        server, {**LONG, "options": {"num_predict": 200}}, busy))
    first.start()
    assert _wait_for(lambda: len(busy) >= 1)
    second = threading.Thread(target=_stream_lines, args=(
        server, {**LONG, "options": {"num_predict": 2}}, queued))
    second.start()  # waits in the queue (one place)
    time.sleep(0.3)
    started = time.monotonic()
    refused = server.client.post("/v1/chat/completions", json={
        "model": MODEL, "messages": [{"role": "user", "content": "hi"}]})
    assert time.monotonic() - started < 1.0
    assert refused.status_code == 503
    assert refused.headers["retry-after"].isdigit()
    assert refused.json()["error"]["code"] == "unavailable"
    refused_ollama = server.client.post("/api/generate", json={"model": MODEL, "prompt": "hi"})
    assert refused_ollama.status_code == 503
    assert "capacity" in refused_ollama.json()["error"]
    first.join(timeout=60)
    second.join(timeout=60)
    assert busy[-1]["done"] is True
    assert queued[-1]["done"] is True  # the queued request was served, not dropped


def test_killed_worker_fails_only_its_request(start_server: type[Server], data_dir: Path) -> None:
    server = start_server(data_dir, "--workers", "1", "--threads", "1")
    [pid] = server.workers()
    lines: list[dict[str, object]] = []
    reader = threading.Thread(target=_stream_lines, args=(server, LONG, lines))
    reader.start()
    assert _wait_for(lambda: len(lines) >= 3)
    os.kill(pid, signal.SIGKILL)
    reader.join(timeout=30)
    assert not reader.is_alive()
    assert "error" in lines[-1]  # the stream ends with an error line, not a hang
    assert "Traceback" not in json.dumps(lines[-1])
    # The pool restarts the worker; the next request succeeds.
    assert _wait_for(lambda: server.workers() not in ([], [pid]), timeout=30)
    reply = server.ollama().generate(model=MODEL, prompt="hi",
                                                    options={"num_predict": 3})
    assert reply.done is True
    ready = server.client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["workers"]["restarts"] == 1


def test_worker_killed_before_first_token_is_502(
    start_server: type[Server], data_dir: Path,
) -> None:
    server = start_server(data_dir, "--workers", "1", "--threads", "1")
    [pid] = server.workers()
    os.kill(pid, signal.SIGSTOP)  # frozen: the request is sent but nothing comes back
    result: list[httpx.Response] = []
    thread = threading.Thread(target=lambda: result.append(server.client.post(
        "/v1/chat/completions", json={"model": MODEL, "messages": [
            {"role": "user", "content": "hi"}]})))
    thread.start()
    time.sleep(0.5)
    os.kill(pid, signal.SIGKILL)
    thread.join(timeout=30)
    assert result[0].status_code == 502
    assert result[0].json()["error"]["code"] == "worker_failed"
    assert _wait_for(lambda: server.client.get("/readyz").status_code == 200, timeout=30)


def test_client_disconnect_frees_the_worker(start_server: type[Server], data_dir: Path) -> None:
    server = start_server(data_dir, "--workers", "1", "--max-queue", "0", "--threads", "1")
    lines: list[dict[str, object]] = []
    _stream_lines(server, LONG, lines, stop_after=3)  # read three tokens, then hang up
    # With no queue, a request is refused unless the one worker is idle again.
    freed = _wait_for(lambda: server.client.post("/api/generate", json={
        "model": MODEL, "prompt": "hi", "options": {"num_predict": 1}}).status_code == 200,
        timeout=2.0)
    assert freed


def test_keep_alive_unloads_idle_models(start_server: type[Server], data_dir: Path) -> None:
    server = start_server(data_dir, "--workers", "1", env={"VAGT_KEEP_ALIVE": "1"})
    client = server.ollama()
    client.generate(model=MODEL, prompt="hi", options={"num_predict": 1})
    assert [m.model for m in client.ps().models] == [MODEL]
    assert _wait_for(lambda: client.ps().models == [], timeout=5)
    assert server.workers() == []
    reply = client.generate(model=MODEL, prompt="hi", options={"num_predict": 1})
    assert reply.load_duration is not None
    assert reply.load_duration > 1_000_000  # this request paid for loading the model


def test_max_loaded_models_evicts_the_least_recently_used(
    start_server: type[Server], data_dir: Path, model_path: Path,
) -> None:
    sha = Catalogue.library().resolve(MODEL).sha256
    for name in ("second:latest", "third:latest"):
        add_model(data_dir, {"name": name, "format": "gguf", "file": str(model_path),
                             "sha256": sha, "system": f"You are {name}."})
    server = start_server(data_dir, "--workers", "1", env={"VAGT_MAX_LOADED_MODELS": "2"})
    client = server.ollama()
    for name in ("second", "third"):
        client.generate(model=name, prompt="hi", options={"num_predict": 1})
    resident = {m.model for m in client.ps().models}
    assert resident == {"second:latest", "third:latest"}  # the default was least recent
    assert len(server.workers()) == 2


def test_checksum_mismatch_refuses_to_load(tmp_path: Path, model_path: Path,
                                           start_server: type[Server]) -> None:
    data_dir = tmp_path / "bad"
    write_catalogue(data_dir, model_path, sha256="0" * 64)
    result = run_vagt("serve", "--port", "0", "--data-dir", str(data_dir))
    assert result.returncode != 0
    assert str(model_path) in result.stderr
    assert "0" * 64 in result.stderr
    assert "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53" in result.stderr
    # Not preloaded: the gateway starts, and a request for the model gets a safe 503.
    server = start_server(data_dir, env={"VAGT_PRELOAD": "false"})
    response = server.client.post("/api/generate", json={"model": MODEL, "prompt": "hi"})
    assert response.status_code == 503
    assert str(model_path) not in response.text  # paths and hashes stay in the log
    assert server.logged("0" * 64)


def test_workers_serve_in_parallel(start_server: type[Server], data_dir: Path) -> None:
    workers = 2
    server = start_server(data_dir, "--workers", str(workers), "--threads", "1",
                          "--max-queue", "0")
    results: list[list[dict[str, object]]] = [[] for _ in range(workers)]
    threads = [threading.Thread(target=_stream_lines, args=(
        server, {**LONG, "options": {"num_predict": 20}}, results[i])) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert all(r and r[-1]["done"] is True for r in results)  # none refused with max_queue 0
