"""Count a request's prompt tokens in the gateway, exactly as the worker will.

The limits stage reserves tokens before a request runs, so it needs the prompt's size up front.
A vocabulary-only llama.cpp model (no weights, a few MB) tokenizes the same text the worker
would: the conversation with the catalogue's system prompt and seed messages, rendered by the
same chat template, with the same special-token handling.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from llama_cpp import Llama
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from inference.registry import ModelSpec, verified_path
from inference.types import ChatRequest, CompletionRequest, EmbedRequest


class PromptCounter:
    def __init__(self, spec: ModelSpec, path: Path) -> None:
        self.spec = spec
        self._vocab: Any = Llama(model_path=str(path), vocab_only=True, verbose=False)
        model = self._vocab._model
        eos, bos = self._vocab.token_eos(), self._vocab.token_bos()
        template = spec.template or self._vocab.metadata.get("tokenizer.chat_template")
        self._formatter = None if template is None else Jinja2ChatFormatter(
            template=template, eos_token=model.token_get_text(eos) if eos != -1 else "",
            bos_token=model.token_get_text(bos) if bos != -1 else "")
        self._bos = 1 if bos != -1 and model.add_bos_token() else 0

    def _count(self, text: str) -> int:
        if not text:
            return 0
        tokens = self._vocab.tokenize(text.encode(), add_bos=False, special=True)
        return self._bos + len(tokens)

    def prompt_tokens(self, request: ChatRequest | CompletionRequest) -> int:
        if isinstance(request, CompletionRequest):
            return self._count(request.prompt)
        messages = [m.model_dump() for m in self.spec.conversation(request.messages)]
        if self._formatter is None:
            return self._count("\n".join(m["content"] for m in messages))
        return self._count(self._formatter(messages=messages).prompt)

    def input_tokens(self, request: EmbedRequest) -> int:
        return sum(len(self._vocab.tokenize(text.encode(), add_bos=True, special=True))
                   for text in request.inputs)


class PromptCounters:
    """One PromptCounter per model, loaded on first use (off the event loop)."""

    def __init__(self, models_dir: Path) -> None:
        self.models_dir = models_dir
        self._counters: dict[str, PromptCounter] = {}

    async def prompt_tokens(self, spec: ModelSpec,
                            request: ChatRequest | CompletionRequest) -> int:
        counter = await self._counter(spec)
        return await asyncio.to_thread(counter.prompt_tokens, request)

    async def input_tokens(self, spec: ModelSpec, request: EmbedRequest) -> int:
        counter = await self._counter(spec)
        return await asyncio.to_thread(counter.input_tokens, request)

    async def _counter(self, spec: ModelSpec) -> PromptCounter:
        counter = self._counters.get(spec.name)
        if counter is None:
            path = await asyncio.to_thread(verified_path, spec, self.models_dir)
            counter = await asyncio.to_thread(PromptCounter, spec, path)
            self._counters[spec.name] = counter
        return counter
