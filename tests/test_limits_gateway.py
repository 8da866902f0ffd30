"""Limits in a live gateway (in-memory store): 429 in each API's shape with Retry-After and the
RateLimit headers, token reservations refunded at settlement, concurrency freed on disconnect."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from inference.registry import Catalogue
from inference.tokenizer import PromptCounter
from inference.types import ChatRequest, Message
from tests.conftest import MODEL, Server, open_policy, write_catalogue

POLICY = open_policy(("admin", "user", "streamer"), """limits:
  roles:
    user:
      requests: 3/minute
  subjects:
    key:budgeted:
      tokens: 400/hour
  models:
    "smollm2*":
      concurrent: 5
    "*":
      requests: 1000/minute
""")


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, model_path: Path) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("limits")
    write_catalogue(root / "data", model_path)
    policy = root / "policy.yaml"
    policy.write_text(POLICY.replace("concurrent: 5", "concurrent: 1"))
    server = Server(root / "data", "--workers", "2", "--threads", "1", policy=policy)
    yield server
    server.stop()


def chat(http: httpx.Client, **extra: object) -> httpx.Response:
    return http.post("/v1/chat/completions", json={
        "model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2,
        **extra})


def test_request_rate_gives_429_with_headers(gateway: Server) -> None:
    with gateway.as_key(gateway.create_key("rate-user", "user")) as http:
        ok = [chat(http) for _ in range(3)]
        assert [r.status_code for r in ok] == [200, 200, 200]
        assert ok[0].headers["ratelimit-limit"] == "3"  # the tightest quota: 3/minute
        assert ok[0].headers["ratelimit-remaining"] == "2"
        refused = chat(http)
        assert refused.status_code == 429
        error = refused.json()["error"]
        assert error["code"] == "rate_limit_exceeded"
        assert "requests (3/minute, roles)" in error["message"]
        assert 1 <= int(refused.headers["retry-after"]) <= 20
        assert refused.headers["ratelimit-limit"] == "3"
        assert refused.headers["ratelimit-remaining"] == "0"
        ollama = http.post("/api/chat", json={"model": MODEL, "stream": False, "messages": [
            {"role": "user", "content": "hi"}]})
        assert ollama.status_code == 429
        assert "3/minute" in ollama.json()["error"]


def test_unused_tokens_are_refunded(gateway: Server) -> None:
    """400 tokens/hour; each request reserves its prompt + 300 but stops after a few."""
    with gateway.as_key(gateway.create_key("budgeted", "streamer")) as http:
        def ask() -> httpx.Response:
            return http.post("/api/generate", json={
                "model": MODEL, "prompt": "Tell me about the sea.", "stream": False,
                "options": {"num_predict": 300, "temperature": 0, "stop": [" "]}})

        first = ask()
        assert first.status_code == 200, first.text
        used = first.json()["prompt_eval_count"] + first.json()["eval_count"]
        assert used < 60
        time.sleep(0.2)  # settlement runs as its own task
        second = ask()  # admitted only because the first one's unused tokens came back
        assert second.status_code == 200, second.text
        time.sleep(0.2)
        third = ask()  # twice what was used, plus another reservation of ~330: over 400
        assert third.status_code == 429
        assert "tokens (400/hour, subject)" in third.json()["error"]


def test_concurrency_slot_is_freed_when_the_client_hangs_up(gateway: Server) -> None:
    with gateway.as_key(gateway.create_key("stream-a", "streamer")) as http:
        lines: list[dict[str, object]] = []
        started = threading.Event()

        def stream() -> None:
            with http.stream("POST", "/api/generate", json={
                "model": MODEL, "prompt": "Write a very long story.",
                "options": {"num_predict": 2000}}) as response:
                for line in response.iter_lines():
                    lines.append(json.loads(line))
                    started.set()
                    if len(lines) >= 3:
                        return  # hang up mid-stream

        reader = threading.Thread(target=stream)
        reader.start()
        assert started.wait(30)
        busy = chat(http)  # the one slot on smollm2* is taken by the stream
        assert busy.status_code == 429
        assert "concurrent requests (1, model smollm2*)" in busy.json()["error"]["message"]
        reader.join(timeout=30)
        deadline = time.monotonic() + 5
        while chat(http).status_code == 429 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert chat(http).status_code == 200  # settled: the slot came back


BUDGET = open_policy(("admin", "user"), """limits:
  roles:
    user:
      daily_tokens: 100000
""")


@pytest.fixture
def budgeted(tmp_path: Path, model_path: Path) -> Iterator[tuple[Server, httpx.Client]]:
    write_catalogue(tmp_path / "data", model_path)
    policy = tmp_path / "policy.yaml"
    policy.write_text(BUDGET)
    server = Server(tmp_path / "data", "--workers", "1", "--threads", "1", policy=policy)
    with server.as_key(server.create_key("metered", "user")) as http:
        yield server, http
    server.stop()


STORY = "Write a very long story about the sea."


def _cut_stream(http: httpx.Client, after: int, then: object = None) -> None:
    """Stream a long answer and stop reading after ``after`` pieces."""
    with http.stream("POST", "/api/generate", json={
        "model": MODEL, "prompt": STORY, "options": {"num_predict": 2000}}) as response:
        assert response.status_code == 200
        for count, _ in enumerate(response.iter_lines(), start=1):
            if count == after:
                if callable(then):
                    then()
                break


def _prompt_tokens(model_path: Path, prompt: str) -> int:
    """What the worker evaluates for ``prompt`` (the gateway's tokenizer counts the same)."""
    counter = PromptCounter(Catalogue.library().resolve(MODEL), model_path)
    return counter.prompt_tokens(ChatRequest(model=MODEL, messages=(
        Message(role="user", content=prompt),)))


def _spent(http: httpx.Client) -> int:
    """Tokens spent so far per the budget, before a probe request (which reserves its own)."""
    probe = http.post("/api/generate", json={"model": MODEL, "prompt": "hi", "stream": False,
                                             "options": {"num_predict": 1}})
    assert probe.status_code == 200
    reserved = probe.json()["prompt_eval_count"] + 1
    return 100000 - int(probe.headers["ratelimit-remaining"]) - reserved


def test_a_stream_cut_by_the_client_settles_to_what_was_produced(
    budgeted: tuple[Server, httpx.Client], model_path: Path,
) -> None:
    _, http = budgeted
    _cut_stream(http, after=5)
    prompt = _prompt_tokens(model_path, STORY)
    time.sleep(0.5)  # the cancelled job ends in the worker, then settlement runs
    # its prompt and the few tokens made before the worker stopped — not the 2000 reserved
    assert prompt + 5 <= _spent(http) <= prompt + 5 + 10


def test_a_stream_whose_worker_dies_settles_to_what_was_produced(
    budgeted: tuple[Server, httpx.Client], model_path: Path,
) -> None:
    server, http = budgeted
    [pid] = server.workers()
    _cut_stream(http, after=5, then=lambda: os.kill(pid, signal.SIGKILL))
    prompt = _prompt_tokens(model_path, STORY)
    deadline = time.monotonic() + 30
    while server.client.get("/readyz").status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert prompt + 5 <= _spent(http) <= prompt + 5 + 10
