"""The OpenAI API: /v1/chat/completions, /v1/completions, /v1/embeddings, /v1/models."""

from __future__ import annotations

import base64
import json
import struct
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from gateway import __version__
from gateway.api.context import Context
from gateway.api.wire import caller_of, guarded_routes, parse, typed
from gateway.errors import BadRequest, GatewayError
from gateway.pipeline import collect
from inference.types import (
    ChatRequest,
    Chunk,
    CompletionRequest,
    Done,
    EmbedRequest,
    Event,
    JsonFormat,
    Message,
    Sampling,
    Usage,
)

FINGERPRINT = f"vagt-{__version__}"


# --- wire models ---------------------------------------------------------------------------------

class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _ContentPart(_Wire):
    type: str
    text: str | None = None


class _Message(_Wire):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[_ContentPart] | None = None

    def typed(self) -> Message:
        role = "system" if self.role == "developer" else self.role
        if self.content is None:
            return Message(role=role, content="")
        if isinstance(self.content, str):
            return Message(role=role, content=self.content)
        if any(part.type != "text" for part in self.content):
            raise BadRequest("only text content parts are supported", param="messages")
        return Message(role=role, content="".join(part.text or "" for part in self.content))


class _StreamOptions(_Wire):
    include_usage: bool = False


class _JsonSchema(_Wire):
    name: str = "response"
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class _ResponseFormat(_Wire):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: _JsonSchema | None = None

    def typed(self) -> JsonFormat | None:
        if self.type == "text":
            return None
        if self.type == "json_schema":
            if self.json_schema is None or self.json_schema.schema_ is None:
                raise BadRequest("response_format.json_schema.schema is required",
                                 param="response_format.json_schema")
            return JsonFormat(json_schema=self.json_schema.schema_)
        return JsonFormat()


Stop = str | Annotated[list[str], Field(max_length=4)] | None


class _Generation(_Wire):
    model: str = Field(min_length=1)
    stream: bool = False
    stream_options: _StreamOptions | None = None
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] | None = None
    top_p: Annotated[float, Field(gt=0.0, le=1.0)] | None = None
    presence_penalty: Annotated[float, Field(ge=-2.0, le=2.0)] | None = None
    frequency_penalty: Annotated[float, Field(ge=-2.0, le=2.0)] | None = None
    seed: int | None = None
    stop: Stop = None
    n: Annotated[int, Field(ge=1, le=1)] = 1

    def sampling(self, max_tokens: int | None) -> Sampling:
        stop = [self.stop] if isinstance(self.stop, str) else self.stop
        return Sampling(
            temperature=self.temperature, top_p=self.top_p, seed=self.seed,
            presence_penalty=self.presence_penalty, frequency_penalty=self.frequency_penalty,
            stop=None if stop is None else tuple(stop), num_predict=max_tokens,
        )


class _ChatCompletion(_Generation):
    messages: list[_Message] = Field(min_length=1)
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    max_completion_tokens: Annotated[int, Field(ge=1)] | None = None
    response_format: _ResponseFormat | None = None
    tools: list[Any] | None = None

    @field_validator("tools")
    @classmethod
    def _no_tools(cls, tools: list[Any] | None) -> list[Any] | None:
        if tools:
            raise ValueError("tools are not supported by this gateway's models")
        return tools

    def typed(self) -> ChatRequest:
        return ChatRequest(
            model=self.model,
            messages=tuple(m.typed() for m in self.messages),
            sampling=self.sampling(self.max_completion_tokens or self.max_tokens),
            format=None if self.response_format is None else self.response_format.typed(),
        )


class _Completion(_Generation):
    prompt: str | Annotated[list[str], Field(min_length=1, max_length=1)]
    suffix: str | None = None
    max_tokens: Annotated[int, Field(ge=1)] | None = 16  # OpenAI's default for this endpoint
    echo: Literal[False] = False

    def typed(self) -> CompletionRequest:
        prompt = self.prompt if isinstance(self.prompt, str) else self.prompt[0]
        return CompletionRequest(model=self.model, prompt=prompt, suffix=self.suffix,
                                 sampling=self.sampling(self.max_tokens))


class _Embedding(_Wire):
    model: str = Field(min_length=1)
    input: str | Annotated[list[str], Field(min_length=1, max_length=2048)]
    encoding_format: Literal["float", "base64"] = "float"

    def typed(self) -> EmbedRequest:
        inputs = (self.input,) if isinstance(self.input, str) else tuple(self.input)
        return EmbedRequest(model=self.model, inputs=inputs)


# --- rendering -----------------------------------------------------------------------------------

def error_response(error: GatewayError) -> JSONResponse:
    body = {"error": {"message": error.message, "type": error.kind, "param": error.param,
                      "code": error.code}}
    return JSONResponse(body, status_code=error.status, headers=error.headers)


def _usage(usage: Usage) -> dict[str, int]:
    return {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens}


def _sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


class OpenAIAPI:
    def __init__(self, context: Context) -> None:
        self.context = context

    @property
    def routes(self) -> list[Route]:
        return guarded_routes(self.context.pipeline, error_response, "openai", [
            ("POST", "/v1/chat/completions", self.chat),
            ("POST", "/v1/completions", self.completions),
            ("POST", "/v1/embeddings", self.embeddings),
            ("GET", "/v1/models", self.models),
            ("GET", "/v1/models/{model:path}", self.model),
        ])

    async def chat(self, request: Request) -> Response:
        wire = await parse(request, _ChatCompletion, self.context.settings.max_body_bytes)
        call = typed(wire.typed)
        events = await self.context.pipeline.generate(caller_of(request), "chat", call)
        reply = _Reply("chatcmpl", "chat.completion", wire.model)
        if wire.stream:
            usage = wire.stream_options is not None and wire.stream_options.include_usage
            return _stream(reply.chat_chunks(events, usage))
        text, done = await collect(events)
        return JSONResponse(reply.body({
            "index": 0, "message": {"role": "assistant", "content": text, "refusal": None},
            "logprobs": None, "finish_reason": done.finish_reason,
        }, done.usage))

    async def completions(self, request: Request) -> Response:
        wire = await parse(request, _Completion, self.context.settings.max_body_bytes)
        call = typed(wire.typed)
        events = await self.context.pipeline.generate(caller_of(request), "complete", call)
        reply = _Reply("cmpl", "text_completion", wire.model)
        if wire.stream:
            usage = wire.stream_options is not None and wire.stream_options.include_usage
            return _stream(reply.completion_chunks(events, usage))
        text, done = await collect(events)
        return JSONResponse(reply.body({
            "index": 0, "text": text, "logprobs": None, "finish_reason": done.finish_reason,
        }, done.usage))

    async def embeddings(self, request: Request) -> Response:
        wire = await parse(request, _Embedding, self.context.settings.max_body_bytes)
        result = await self.context.pipeline.embed(caller_of(request), typed(wire.typed))
        encode: Callable[[list[float]], Any] = (
            _base64 if wire.encoding_format == "base64" else (lambda v: v))
        return JSONResponse({
            "object": "list",
            "data": [{"object": "embedding", "index": i, "embedding": encode(vector)}
                     for i, vector in enumerate(result.vectors)],
            "model": wire.model,
            "usage": {"prompt_tokens": result.usage.prompt_tokens,
                      "total_tokens": result.usage.prompt_tokens},
        })

    async def models(self, request: Request) -> Response:
        visible = self.context.pipeline.visible_models(caller_of(request))
        return JSONResponse({"object": "list", "data": [
            self._model_card(spec.name) for spec in visible]})

    async def model(self, request: Request) -> Response:
        spec = self.context.pipeline.resolve(request.path_params["model"])
        caller_of(request).require_use(spec)
        return JSONResponse(self._model_card(spec.name))

    def _model_card(self, name: str) -> dict[str, Any]:
        return {"id": name, "object": "model", "created": self.context.started_at,
                "owned_by": "vagt"}


def _base64(vector: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


def _stream(chunks: AsyncIterator[bytes]) -> StreamingResponse:
    return StreamingResponse(chunks, media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


class _Reply:
    """Renders one response: its id, timestamps and chunk envelopes."""

    def __init__(self, id_prefix: str, object_: str, model: str) -> None:
        self.id = f"{id_prefix}-{uuid.uuid4().hex}"
        self.object = object_
        self.model = model
        self.created = int(time.time())

    def body(self, choice: dict[str, Any], usage: Usage) -> dict[str, Any]:
        return {"id": self.id, "object": self.object, "created": self.created,
                "model": self.model, "system_fingerprint": FINGERPRINT,
                "choices": [choice], "usage": _usage(usage)}

    def _chunk(self, choices: list[dict[str, Any]], with_usage: bool) -> bytes:
        payload: dict[str, Any] = {
            "id": self.id, "object": self.object, "created": self.created, "model": self.model,
            "system_fingerprint": FINGERPRINT, "choices": choices,
        }
        if with_usage:
            payload["usage"] = None
        return _sse(payload)

    async def _frames(
        self, events: AsyncIterator[Event], with_usage: bool,
        choice: Callable[[str | None, str | None], dict[str, Any]],
    ) -> AsyncIterator[bytes]:
        done: Done | None = None
        try:
            async for event in events:
                if isinstance(event, Chunk):
                    yield self._chunk([choice(event.text, None)], with_usage)
                else:
                    done = event
        except GatewayError as error:  # after the first byte, errors travel in the stream
            yield _sse({"error": {"message": error.message, "type": error.kind,
                                  "param": error.param, "code": error.code}})
            return
        if done is None:
            return
        yield self._chunk([choice(None, done.finish_reason)], with_usage)
        if with_usage:
            yield _sse({"id": self.id, "object": self.object, "created": self.created,
                        "model": self.model, "system_fingerprint": FINGERPRINT, "choices": [],
                        "usage": _usage(done.usage)})
        yield b"data: [DONE]\n\n"

    async def chat_chunks(self, events: AsyncIterator[Event], usage: bool) -> AsyncIterator[bytes]:
        self.object = "chat.completion.chunk"
        yield self._chunk([{"index": 0, "delta": {"role": "assistant", "content": ""},
                            "logprobs": None, "finish_reason": None}], usage)

        def choice(text: str | None, finish: str | None) -> dict[str, Any]:
            return {"index": 0, "delta": {} if text is None else {"content": text},
                    "logprobs": None, "finish_reason": finish}

        async for frame in self._frames(events, usage, choice):
            yield frame

    async def completion_chunks(
        self, events: AsyncIterator[Event], usage: bool,
    ) -> AsyncIterator[bytes]:
        def choice(text: str | None, finish: str | None) -> dict[str, Any]:
            return {"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish}

        async for frame in self._frames(events, usage, choice):
            yield frame
