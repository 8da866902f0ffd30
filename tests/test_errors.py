"""Bad input gets a clear error in the API's own shape, the right status, and no stack trace."""

from __future__ import annotations

import httpx
import ollama
import openai
import pytest

from tests.conftest import MODEL, Server

CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}


def openai_error(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert "Traceback" not in response.text
    return dict(error)


def ollama_error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert isinstance(body["error"], str)
    assert "Traceback" not in response.text
    return str(body["error"])


@pytest.fixture(scope="module")
def http(server: Server) -> httpx.Client:
    return server.client


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions", "/v1/embeddings"])
def test_openai_malformed_json_is_400(http: httpx.Client, path: str) -> None:
    response = http.post(path, content=b'{"model": "x", "messages": [', headers={
        "content-type": "application/json"})
    error = openai_error(response, 400)
    assert "not valid JSON" in str(error["message"])


@pytest.mark.parametrize("path", ["/api/chat", "/api/generate", "/api/embed", "/api/show"])
def test_ollama_malformed_json_is_400(http: httpx.Client, path: str) -> None:
    assert "not valid JSON" in ollama_error(http.post(path, content=b"{nope"), 400)


def test_body_must_be_an_object(http: httpx.Client) -> None:
    openai_error(http.post("/v1/chat/completions", json=[1, 2]), 400)
    ollama_error(http.post("/api/chat", json="hello"), 400)


def test_unknown_model_is_404_in_both_shapes(server: Server, http: httpx.Client) -> None:
    error = openai_error(http.post("/v1/chat/completions", json={**CHAT, "model": "nope"}), 404)
    assert error["code"] == "model_not_found"
    assert error["param"] == "model"
    assert "nope" in str(error["message"])
    assert "nope" in ollama_error(http.post("/api/chat", json={**CHAT, "model": "nope"}), 404)
    ollama_error(http.post("/api/embed", json={"model": "nope", "input": "x"}), 404)
    ollama_error(http.post("/api/show", json={"model": "nope"}), 404)
    with pytest.raises(openai.NotFoundError):
        server.openai().models.retrieve("x")
    with pytest.raises(ollama.ResponseError) as caught:
        server.ollama().generate(model="nope", prompt="hi")
    assert caught.value.status_code == 404


@pytest.mark.parametrize(("change", "field"), [
    ({"temperature": "hot"}, "temperature"),
    ({"temperature": 3.5}, "temperature"),
    ({"top_p": 0}, "top_p"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"max_tokens": "many"}, "max_tokens"),
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "wizard", "content": "hi"}]}, "messages.0.role"),
    ({"messages": [{"role": "user", "content": 42}]}, "messages.0.content"),
    ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ({"n": 2}, "n"),
    ({"model": 7}, "model"),
    ({"stream": "yes please"}, "stream"),
])
def test_openai_invalid_field_is_400_naming_it(
    http: httpx.Client, change: dict[str, object], field: str,
) -> None:
    error = openai_error(http.post("/v1/chat/completions", json={**CHAT, **change}), 400)
    assert error["param"] is not None
    assert str(error["param"]).startswith(field), error
    assert field in str(error["message"])


def test_missing_model_names_the_field(http: httpx.Client) -> None:
    error = openai_error(http.post("/v1/chat/completions", json={"messages": CHAT["messages"]}),
                         400)
    assert error["param"] == "model"


@pytest.mark.parametrize(("body", "field"), [
    ({"options": {"temperature": "warm"}}, "options.temperature"),
    ({"options": {"num_predict": -7}}, "options.num_predict"),
    ({"options": {"top_k": -1}}, "options.top_k"),
    ({"messages": [{"role": "user", "content": "hi", "images": ["aGk="]}]}, "messages.0.images"),
    ({"keep_alive": "for a while"}, "keep_alive"),
    ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
])
def test_ollama_invalid_field_is_400_naming_it(
    http: httpx.Client, body: dict[str, object], field: str,
) -> None:
    request = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], **body}
    assert field in ollama_error(http.post("/api/chat", json=request), 400)


def test_prompt_beyond_the_context_window_is_400(http: httpx.Client) -> None:
    long = "word " * 5000
    error = openai_error(http.post("/v1/completions", json={
        "model": MODEL, "prompt": long, "max_tokens": 2}), 400)
    assert "context" in str(error["message"])


def test_num_ctx_beyond_the_model_window_is_400(http: httpx.Client) -> None:
    message = ollama_error(http.post("/api/generate", json={
        "model": MODEL, "prompt": "hi", "options": {"num_ctx": 999999}}), 400)
    assert "num_ctx" in message


def test_oversized_body_is_413(http: httpx.Client) -> None:
    huge = "x" * (1024 * 1024 + 10)
    openai_error(http.post("/v1/chat/completions", json={**CHAT, "messages": [
        {"role": "user", "content": huge}]}), 413)
    ollama_error(http.post("/api/generate", json={"model": MODEL, "prompt": huge}), 413)


def test_oversized_chunked_body_without_length_is_413(http: httpx.Client) -> None:
    def body() -> object:
        for _ in range(300):
            yield b"x" * 8192

    response = http.post("/v1/completions", content=body(),
                         headers={"content-type": "application/json"})
    openai_error(response, 413)


def test_unknown_route_and_method_answer_in_shape(http: httpx.Client) -> None:
    openai_error(http.get("/v1/nothing-here"), 404)
    ollama_error(http.get("/api/nothing-here"), 404)
    assert http.get("/v1/chat/completions").status_code == 405


def test_health_endpoints(http: httpx.Client) -> None:
    assert http.get("/healthz").json() == {"status": "ok"}
    ready = http.get("/readyz")
    assert ready.status_code == 200
    body = ready.json()
    assert body["status"] == "ready"
    assert body["default_model"] == MODEL
    assert body["workers"] == {"up": 2, "expected": 2, "busy": 0, "queued": 0, "restarts": 0}
