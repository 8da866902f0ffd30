"""The OpenAI API, driven by the official `openai` client against a live gateway."""

from __future__ import annotations

import base64
import json
import math
import struct
from typing import Any

import openai
import pytest

from tests.conftest import MODEL, Server

PROMPT = [{"role": "user", "content": "Name three colours."}]


@pytest.fixture(scope="module")
def client(server: Server) -> openai.OpenAI:
    return server.openai()


def test_chat_completion(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model=MODEL, messages=PROMPT, max_tokens=24,
                                           temperature=0)
    assert reply.object == "chat.completion"
    assert reply.model == MODEL
    choice = reply.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content
    assert choice.finish_reason in ("stop", "length")
    assert reply.usage is not None
    assert reply.usage.prompt_tokens > 5
    assert 0 < reply.usage.completion_tokens <= 24
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


def test_max_tokens_cuts_with_length(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Write a long story about a ship."}],
        max_completion_tokens=5, temperature=0)
    assert reply.choices[0].finish_reason == "length"
    assert reply.usage is not None
    assert reply.usage.completion_tokens == 5


def test_streaming_matches_non_streaming(client: openai.OpenAI) -> None:
    whole = client.chat.completions.create(model=MODEL, messages=PROMPT, max_tokens=32,
                                           temperature=0)
    stream = client.chat.completions.create(model=MODEL, messages=PROMPT, max_tokens=32,
                                            temperature=0, stream=True,
                                            stream_options={"include_usage": True})
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    finishing = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finishing) == 1
    assert finishing[0].choices[0].finish_reason == whole.choices[0].finish_reason
    # include_usage: a last chunk with no choices carries the usage; the others carry null
    assert chunks[-1].choices == []
    assert chunks[-1].usage == whole.usage
    assert all(c.usage is None for c in chunks[:-1])
    assert len({c.id for c in chunks}) == 1


def test_stream_ends_with_done_sentinel(server: Server) -> None:
    with server.client as http, http.stream("POST", "/v1/chat/completions", json={
        "model": MODEL, "messages": PROMPT, "max_tokens": 4, "stream": True,
    }) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    for line in lines[:-1]:
        chunk = json.loads(line.removeprefix("data: "))
        assert chunk["object"] == "chat.completion.chunk"
        assert "usage" not in chunk  # only with stream_options.include_usage


def test_stop_sequence(client: openai.OpenAI) -> None:
    free = client.chat.completions.create(model=MODEL, messages=PROMPT, max_tokens=32,
                                          temperature=0).choices[0].message.content
    assert free
    word = free.split()[1]
    stopped = client.chat.completions.create(model=MODEL, messages=PROMPT, max_tokens=32,
                                             temperature=0, stop=[word])
    content = stopped.choices[0].message.content
    assert content is not None
    assert word not in content
    assert free.startswith(content)
    assert stopped.choices[0].finish_reason == "stop"


def test_seed_makes_sampling_repeatable(client: openai.OpenAI) -> None:
    def sample(seed: int) -> str | None:
        return client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Invent a name for a cat."}],
            max_tokens=16, temperature=1.5, seed=seed).choices[0].message.content

    first = sample(1234)
    assert sample(1234) == first
    assert any(sample(seed) != first for seed in (1, 2, 3))


def test_json_response_format(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model=MODEL, max_tokens=300, temperature=0,
        messages=[{"role": "user", "content": "Give a person's name and age as JSON."}],
        response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": {
            "type": "object", "properties": {"name": {"type": "string"},
                                             "age": {"type": "integer"}},
            "required": ["name", "age"]}}})
    content = reply.choices[0].message.content
    assert content is not None
    data = json.loads(content)
    assert isinstance(data["name"], str)
    assert isinstance(data["age"], int)


def test_json_object_format(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model=MODEL, max_tokens=300, temperature=0, response_format={"type": "json_object"},
        messages=[{"role": "user", "content": "List two fruits in JSON."}])
    content = reply.choices[0].message.content
    assert content is not None
    assert isinstance(json.loads(content), dict | list)


def test_completion(client: openai.OpenAI) -> None:
    reply = client.completions.create(model=MODEL, prompt="The capital of France is",
                                      max_tokens=8, temperature=0)
    assert reply.object == "text_completion"
    assert reply.choices[0].text
    assert reply.usage is not None
    assert reply.usage.completion_tokens <= 8
    streamed = "".join(c.choices[0].text for c in client.completions.create(
        model=MODEL, prompt="The capital of France is", max_tokens=8, temperature=0,
        stream=True) if c.choices)
    assert streamed == reply.choices[0].text


def test_completion_default_max_tokens_is_16(client: openai.OpenAI) -> None:
    reply = client.completions.create(model=MODEL, prompt="Once upon a time", temperature=0)
    assert reply.usage is not None
    assert reply.usage.completion_tokens <= 16


def _floats(embedding: list[float] | str) -> list[float]:
    if isinstance(embedding, str):  # asked for base64: little-endian float32
        raw = base64.b64decode(embedding)
        return list(struct.unpack(f"<{len(raw) // 4}f", raw))
    return embedding


# The client asks for base64 by itself (and decodes it) when no format is given.
@pytest.mark.parametrize("encoding", [openai.NOT_GIVEN, "float", "base64"])
def test_embeddings(client: openai.OpenAI, encoding: Any) -> None:
    one = client.embeddings.create(model=MODEL, input="hello world", encoding_format=encoding)
    many = client.embeddings.create(model=MODEL, input=["hello world", "goodbye moon"],
                                    encoding_format=encoding)
    assert len(one.data) == 1
    assert [d.index for d in many.data] == [0, 1]
    vector = _floats(one.data[0].embedding)
    first, second = (_floats(d.embedding) for d in many.data)
    assert len(vector) == len(first) > 100
    assert math.isclose(sum(v * v for v in vector), 1.0, rel_tol=1e-3)  # L2-normalised
    assert first == pytest.approx(vector, abs=1e-4)
    assert second != pytest.approx(vector, abs=1e-4)
    assert many.usage.prompt_tokens > one.usage.prompt_tokens > 0


def test_models(client: openai.OpenAI) -> None:
    models = client.models.list()
    assert [m.id for m in models.data] == [MODEL]
    assert client.models.retrieve("smollm2").id == MODEL  # an alias resolves
