"""GGUF models through llama-cpp-python. Runs inside a worker process, never in the gateway."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import llama_cpp
from llama_cpp import Llama
from llama_cpp.llama_chat_format import Jinja2ChatFormatter
from llama_cpp.llama_grammar import JSON_GBNF, LlamaGrammar

from inference.types import Done, FinishReason, Sampling, Timings, Usage

# What a parameter means when neither the request nor the catalogue sets it (Ollama's defaults).
FALLBACK = Sampling(
    temperature=0.8, top_p=0.9, top_k=40, min_p=0.0, repeat_penalty=1.1,
    presence_penalty=0.0, frequency_penalty=0.0, num_predict=-1, stop=(),
)


class _MeteredLlama(Llama):  # type: ignore[misc]
    """Llama that counts prompt and generated tokens, times the first one, and reuses the KV
    cache only in whole batches.

    llama-cpp-python does not report usage while streaming; wrapping ``generate`` (the one loop
    every completion path goes through) gives exact counts for both.

    Reusing the previous prompt's KV-cache prefix evaluates the rest of the prompt in batches cut
    at other places than a fresh evaluation would, which changes the logits slightly: greedy
    decoding (temperature 0) would then depend on what ran before. Keeping only a prefix that is a
    whole number of batches (``n_batch``, 512 tokens) makes every later batch identical to a
    fresh run's, so answers are reproducible and long conversations still skip most of their
    prompt.
    """

    prompt_tokens = 0
    completion_tokens = 0
    first_token_ns = 0
    window = 0  # this request's context window (≤ n_ctx), set before each generation

    def _align_cache(self, tokens: Sequence[int]) -> None:
        common = 0
        for cached, new in zip(self._input_ids, tokens, strict=False):
            if cached != new:
                break
            common += 1
        if common >= len(tokens):  # llama-cpp-python would replay the last token alone
            common = len(tokens) - 1
        self.n_tokens = (common // self.n_batch) * self.n_batch

    def generate(self, tokens: Sequence[int], **kwargs: Any) -> Iterator[int]:
        window = self.window or self.n_ctx()
        if len(tokens) >= window:
            raise ValueError(f"the prompt ({len(tokens)} tokens) does not fit the context "
                             f"window of {window} tokens")
        self._align_cache(tokens)
        self.prompt_tokens = len(tokens)
        self.completion_tokens = 0
        self.first_token_ns = 0
        vocab = self._model.vocab
        for token in super().generate(tokens, **kwargs):
            if not self.first_token_ns:
                self.first_token_ns = time.perf_counter_ns()
            if not llama_cpp.llama_vocab_is_eog(vocab, token):
                self.completion_tokens += 1
            yield token
            if self.prompt_tokens + self.completion_tokens >= window:
                return  # the window is full: the completion ends with finish_reason "length"


class GGUFBackend:
    def __init__(self, path: str, *, num_ctx: int, threads: int, template: str | None) -> None:
        self._path = path
        self._threads = threads
        self.llm = _MeteredLlama(
            model_path=path, n_ctx=num_ctx, n_threads=threads, n_threads_batch=threads,
            verbose=False,
        )
        self.num_ctx = num_ctx
        self._embedder: Llama | None = None
        if template is not None:
            self.llm.chat_handler = self._chat_handler(template)

    def _chat_handler(self, template: str) -> Any:
        model = self.llm._model
        eos, bos = self.llm.token_eos(), self.llm.token_bos()
        return Jinja2ChatFormatter(
            template=template,
            eos_token=model.token_get_text(eos) if eos != -1 else "",
            bos_token=model.token_get_text(bos) if bos != -1 else "",
            stop_token_ids=[eos],
        ).to_chat_handler()

    # --- generation ------------------------------------------------------------------------

    def chat(
        self, messages: list[dict[str, str]], sampling: Sampling,
        json_format: dict[str, Any] | None, cancel: threading.Event,
    ) -> Iterator[str | Done]:
        started = time.perf_counter_ns()
        stream = self.llm.create_chat_completion(
            messages=messages, stream=True, **self._arguments(sampling, json_format))
        return self._events(stream, lambda choice: choice["delta"].get("content"), cancel, started)

    def complete(
        self, prompt: str, suffix: str | None, sampling: Sampling,
        json_format: dict[str, Any] | None, cancel: threading.Event,
    ) -> Iterator[str | Done]:
        started = time.perf_counter_ns()
        stream = self.llm.create_completion(
            prompt=prompt, suffix=suffix, stream=True, **self._arguments(sampling, json_format))
        return self._events(stream, lambda choice: choice["text"], cancel, started)

    def _events(
        self, stream: Any, text_of: Callable[[Any], str | None], cancel: threading.Event,
        started_ns: int,
    ) -> Iterator[str | Done]:
        """Text pieces, then Done; stops early (closing the stream) once ``cancel`` is set."""
        for chunk in stream:
            choice = chunk["choices"][0]
            if text := text_of(choice):
                yield text
            if choice["finish_reason"] is not None:
                yield self._done(choice["finish_reason"], started_ns)
                return
            if cancel.is_set():
                stream.close()
                return

    def _arguments(self, sampling: Sampling, json_format: dict[str, Any] | None) -> dict[str, Any]:
        s = sampling.over(FALLBACK)
        if s.num_ctx is not None and s.num_ctx > self.num_ctx:
            raise ValueError(
                f"options.num_ctx {s.num_ctx} exceeds this model's context window of {self.num_ctx}"
            )
        self.llm.window = s.num_ctx or self.num_ctx
        arguments: dict[str, Any] = {
            "temperature": s.temperature, "top_p": s.top_p, "top_k": s.top_k, "min_p": s.min_p,
            "repeat_penalty": s.repeat_penalty, "presence_penalty": s.presence_penalty,
            "frequency_penalty": s.frequency_penalty, "seed": s.seed,
            "stop": list(s.stop or ()),
            "max_tokens": s.num_predict if s.num_predict and s.num_predict > 0 else -1,
        }
        if json_format is not None:
            schema = json_format.get("json_schema")
            arguments["grammar"] = (
                LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)
                if schema else LlamaGrammar.from_string(JSON_GBNF, verbose=False)
            )
        return arguments

    def _done(self, finish_reason: FinishReason, started_ns: int) -> Done:
        now = time.perf_counter_ns()
        first = self.llm.first_token_ns or now
        return Done(
            finish_reason=finish_reason,
            usage=Usage(self.llm.prompt_tokens, self.llm.completion_tokens),
            timings=Timings(
                prompt_eval_ns=first - started_ns, eval_ns=now - first, total_ns=now - started_ns
            ),
        )

    # --- embeddings ------------------------------------------------------------------------

    def embed(self, inputs: list[str], truncate: bool) -> tuple[list[list[float]], int]:
        """L2-normalised embeddings and the number of tokens read.

        Loaded lazily: llama.cpp needs a second context in embedding mode.
        """
        if self._embedder is None:
            self._embedder = Llama(
                model_path=self._path, n_ctx=self.num_ctx, n_threads=self._threads,
                n_threads_batch=self._threads, embedding=True, verbose=False,
                pooling_type=llama_cpp.LLAMA_POOLING_TYPE_MEAN,
            )
        vectors, tokens = self._embedder.embed(
            inputs, normalize=True, truncate=truncate, return_count=True
        )
        return vectors, tokens

