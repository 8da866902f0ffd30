"""The gateway's prompt counts match what the worker really evaluates."""

from __future__ import annotations

from pathlib import Path

import pytest

from inference.registry import Catalogue
from inference.tokenizer import PromptCounter
from inference.types import ChatRequest, CompletionRequest, EmbedRequest, Message
from tests.conftest import MODEL, Server


@pytest.fixture(scope="module")
def counter(model_path: Path) -> PromptCounter:
    spec = Catalogue.library().resolve(MODEL).model_copy(
        update={"system": "You are terse.", "messages": (
            Message(role="user", content="Hi"), Message(role="assistant", content="Hello."))})
    return PromptCounter(spec, model_path)


@pytest.mark.parametrize("messages", [
    [{"role": "user", "content": "Say hello"}],
    [{"role": "system", "content": "Answer in French."},
     {"role": "user", "content": "What is the capital of Italy? Be brief, please."}],
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
     {"role": "user", "content": "Ünïcödé, emoji 🙂 and <|im_start|> look-alikes"}],
])
def test_chat_counts_match_the_worker(server: Server, model_path: Path,
                                      messages: list[dict[str, str]]) -> None:
    reply = server.ollama().chat(model=MODEL, messages=messages, options={"num_predict": 1})
    plain = PromptCounter(Catalogue.library().resolve(MODEL), model_path)
    request = ChatRequest(model=MODEL, messages=tuple(Message.model_validate(m)
                                                       for m in messages))
    assert plain.prompt_tokens(request) == reply.prompt_eval_count


def test_raw_prompt_counts_match_the_worker(server: Server, model_path: Path) -> None:
    reply = server.ollama().generate(model=MODEL, prompt="The capital of France is", raw=True,
                                     options={"num_predict": 1})
    plain = PromptCounter(Catalogue.library().resolve(MODEL), model_path)
    assert plain.prompt_tokens(CompletionRequest(model=MODEL, prompt="The capital of France is")
                               ) == reply.prompt_eval_count


def test_catalogue_system_prompt_and_seed_messages_count(counter: PromptCounter) -> None:
    request = ChatRequest(model=MODEL, messages=(Message(role="user", content="Say hello"),))
    plain = PromptCounter(Catalogue.library().resolve(MODEL), counter._vocab.model_path)
    spelled_out = ChatRequest(model=MODEL, messages=(
        Message(role="system", content="You are terse."), Message(role="user", content="Hi"),
        Message(role="assistant", content="Hello."), Message(role="user", content="Say hello")))
    assert counter.prompt_tokens(request) == plain.prompt_tokens(spelled_out)
    assert counter.prompt_tokens(request) != plain.prompt_tokens(request)


def test_embedding_inputs(counter: PromptCounter, server: Server) -> None:
    reply = server.ollama().embed(model=MODEL, input=["hello world", "goodbye moon"])
    assert counter.input_tokens(EmbedRequest(model=MODEL, inputs=(
        "hello world", "goodbye moon"))) == reply.prompt_eval_count
