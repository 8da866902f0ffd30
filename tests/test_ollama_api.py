"""The Ollama API, driven by the official `ollama` client against a live gateway."""

from __future__ import annotations

import json
import math
import time
from datetime import datetime

import ollama
import pytest

from tests.conftest import MODEL, Server

MESSAGES = [{"role": "user", "content": "Name three colours."}]
GREEDY = {"temperature": 0, "num_predict": 24}


@pytest.fixture(scope="module")
def client(server: Server) -> ollama.Client:
    return server.ollama()


def test_chat(client: ollama.Client) -> None:
    reply = client.chat(model=MODEL, messages=MESSAGES, options=GREEDY)
    assert reply.message.role == "assistant"
    assert reply.message.content
    assert reply.done is True
    assert reply.done_reason in ("stop", "length")
    assert reply.prompt_eval_count is not None
    assert reply.prompt_eval_count > 5
    assert reply.eval_count is not None
    assert 0 < reply.eval_count <= 24
    assert reply.eval_duration is not None
    assert reply.prompt_eval_duration is not None
    assert reply.total_duration is not None
    assert reply.total_duration >= reply.eval_duration + reply.prompt_eval_duration > 0
    assert reply.created_at is not None
    datetime.fromisoformat(reply.created_at.replace("Z", "+00:00"))


def test_chat_stream_matches_whole(client: ollama.Client) -> None:
    whole = client.chat(model=MODEL, messages=MESSAGES, options=GREEDY)
    parts = list(client.chat(model=MODEL, messages=MESSAGES, options=GREEDY, stream=True))
    assert all(p.done is False for p in parts[:-1])
    assert parts[-1].done is True
    assert parts[-1].eval_count == whole.eval_count
    assert "".join(p.message.content or "" for p in parts) == whole.message.content


def test_generate_stream_is_ndjson(server: Server) -> None:
    with server.client as http, http.stream("POST", "/api/generate", json={
        "model": MODEL, "prompt": "Why is the sky blue?", "options": {"num_predict": 6},
    }) as response:
        assert response.headers["content-type"] == "application/x-ndjson"
        lines = [json.loads(line) for line in response.iter_lines() if line]
    assert [line["done"] for line in lines] == [False] * (len(lines) - 1) + [True]
    final = lines[-1]
    assert final["done_reason"] == "length"
    assert final["eval_count"] == 6
    for key in ("total_duration", "load_duration", "prompt_eval_count", "prompt_eval_duration",
                "eval_duration"):
        assert isinstance(final[key], int), key


def test_generate_raw_and_templated(client: ollama.Client) -> None:
    templated = client.generate(model=MODEL, prompt="Name three colours.", options=GREEDY)
    chat = client.chat(model=MODEL, messages=MESSAGES, options=GREEDY)
    assert templated.response == chat.message.content  # generate applies the chat template
    raw = client.generate(model=MODEL, prompt="The capital of France is", raw=True,
                          options={"temperature": 0, "num_predict": 8})
    assert raw.response
    assert raw.prompt_eval_count is not None
    assert raw.prompt_eval_count < 10  # no template around a raw prompt


def test_system_prompt_changes_the_answer(client: ollama.Client) -> None:
    plain = client.generate(model=MODEL, prompt="Who are you?", options=GREEDY)
    pirate = client.generate(model=MODEL, prompt="Who are you?", options=GREEDY,
                             system="You are a pirate. Always answer like a pirate.")
    assert pirate.prompt_eval_count is not None
    assert plain.prompt_eval_count is not None
    assert pirate.prompt_eval_count != plain.prompt_eval_count  # the template's default differs
    assert pirate.response != plain.response


def test_json_format(client: ollama.Client) -> None:
    reply = client.chat(model=MODEL, format="json", options={"temperature": 0, "num_predict": 300},
                        messages=[{"role": "user", "content": "Describe a cat in JSON."}])
    assert isinstance(json.loads(reply.message.content or ""), dict | list)
    schema = {"type": "object", "properties": {"colour": {"type": "string"}},
              "required": ["colour"]}
    reply = client.chat(model=MODEL, format=schema, options={"temperature": 0, "num_predict": 300},
                        messages=[{"role": "user", "content": "What colour is the sky?"}])
    assert isinstance(json.loads(reply.message.content or "")["colour"], str)


def test_stop_option(client: ollama.Client) -> None:
    free = client.generate(model=MODEL, prompt="Count from one to ten in words.",
                           options=GREEDY).response
    word = free.split()[2]
    stopped = client.generate(model=MODEL, prompt="Count from one to ten in words.",
                              options={**GREEDY, "stop": [word]})
    assert word not in stopped.response
    assert stopped.done_reason == "stop"


def test_embed(client: ollama.Client) -> None:
    reply = client.embed(model=MODEL, input=["hello world", "goodbye moon"])
    assert len(reply.embeddings) == 2
    assert math.isclose(sum(v * v for v in reply.embeddings[0]), 1.0, rel_tol=1e-3)
    assert reply.prompt_eval_count is not None
    assert reply.prompt_eval_count > 2
    single = client.embed(model=MODEL, input="hello world")
    assert single.embeddings[0] == pytest.approx(reply.embeddings[0], abs=1e-4)


def test_legacy_embeddings(client: ollama.Client) -> None:
    reply = client.embeddings(model=MODEL, prompt="hello world")
    modern = client.embed(model=MODEL, input="hello world")
    assert list(reply.embedding) == pytest.approx(list(modern.embeddings[0]), abs=1e-4)


def test_tags_show_version(client: ollama.Client, model_path: object) -> None:
    tags = client.list()
    assert [m.model for m in tags.models] == [MODEL]
    entry = tags.models[0]
    assert entry.size == 98362432
    assert entry.digest is not None
    assert len(entry.digest) == 64
    assert entry.details is not None
    assert entry.details.format == "gguf"
    assert entry.details.quantization_level == "Q4_1"
    shown = client.show("smollm2")
    assert shown.modelfile is not None
    assert "FROM" in shown.modelfile
    assert shown.parameters is not None
    assert "temperature" in shown.parameters
    version = client._client.get("/api/version").json()
    assert isinstance(version["version"], str)


def test_ps_and_keep_alive_unload(client: ollama.Client) -> None:
    client.generate(model=MODEL, prompt="hi", options={"num_predict": 1}, keep_alive="5m")
    running = client.ps()
    assert [m.model for m in running.models] == [MODEL]
    expires = running.models[0].expires_at
    assert expires is not None
    left = expires.timestamp() - time.time()
    assert 250 < left <= 300
    unloaded = client.generate(model=MODEL, keep_alive=0)
    assert unloaded.done_reason == "unload"
    deadline = time.time() + 5
    while client.ps().models and time.time() < deadline:
        time.sleep(0.1)
    assert client.ps().models == []
    loaded = client.generate(model=MODEL)  # an empty prompt loads the model
    assert loaded.done_reason == "load"
    assert [m.model for m in client.ps().models] == [MODEL]
