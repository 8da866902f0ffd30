"""The Ollama API: /api/chat, /api/generate, /api/embed, /api/embeddings, /api/tags, /api/ps,
/api/show, /api/version. Streams are NDJSON; durations are nanoseconds."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from gateway import __version__
from gateway.api.context import Context
from gateway.api.wire import caller_of, guarded_routes, parse, typed
from gateway.durations import parse_duration
from gateway.errors import BadRequest, GatewayError
from gateway.pipeline import collect
from inference.registry import ModelSpec
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
    Timings,
)

_FOREVER = "2318-11-25T00:00:00Z"  # what Ollama shows for a model kept loaded forever


def parse_keep_alive(value: float | str | None) -> float | None:
    """Seconds from Ollama's ``keep_alive``: a number of seconds or a Go duration ("5m",
    "1h30m", "-1"). Negative means forever."""
    if value is None or isinstance(value, float | int):
        return None if value is None else float(value)
    try:
        return parse_duration(value)
    except ValueError:
        raise BadRequest(f"keep_alive: invalid duration {value!r}", param="keep_alive") from None


# --- wire models ---------------------------------------------------------------------------------

class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _Options(_Wire):
    """The runtime options Vagt honours; Ollama's load-time options are accepted and ignored."""

    temperature: Annotated[float, Field(ge=0.0, le=2.0)] | None = None
    top_p: Annotated[float, Field(gt=0.0, le=1.0)] | None = None
    top_k: Annotated[int, Field(ge=0)] | None = None
    min_p: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    repeat_penalty: Annotated[float, Field(ge=0.0)] | None = None
    presence_penalty: Annotated[float, Field(ge=-2.0, le=2.0)] | None = None
    frequency_penalty: Annotated[float, Field(ge=-2.0, le=2.0)] | None = None
    seed: int | None = None
    num_ctx: Annotated[int, Field(ge=16)] | None = None
    num_predict: Annotated[int, Field(ge=-2)] | None = None
    stop: list[str] | None = None

    def sampling(self) -> Sampling:
        values = self.model_dump(exclude_none=True)
        if values.get("num_predict") == -2:  # "fill the context": the same as unlimited here
            values["num_predict"] = -1
        if "stop" in values:
            values["stop"] = tuple(values["stop"])
        return Sampling(**values)


class _Message(_Wire):
    role: Literal["system", "user", "assistant", "tool"]
    content: str = ""
    images: list[str] | None = None

    @field_validator("images")
    @classmethod
    def _no_images(cls, images: list[str] | None) -> list[str] | None:
        if images:
            raise ValueError("this model does not support images")
        return images


class _Generation(_Wire):
    model: str = Field(min_length=1)
    stream: bool = True
    options: _Options = _Options()
    format: Literal["", "json"] | dict[str, Any] | None = None
    keep_alive: float | str | None = None

    def json_format(self) -> JsonFormat | None:
        if not self.format:
            return None
        return JsonFormat(json_schema=self.format if isinstance(self.format, dict) else None)


class _Chat(_Generation):
    messages: list[_Message] = Field(default_factory=list)
    tools: list[Any] | None = None

    @field_validator("tools")
    @classmethod
    def _no_tools(cls, tools: list[Any] | None) -> list[Any] | None:
        if tools:
            raise ValueError("this model does not support tools")
        return tools


class _Generate(_Generation):
    prompt: str = ""
    system: str | None = None
    raw: bool = False
    suffix: str | None = None
    template: str | None = None
    images: list[str] | None = None

    @field_validator("suffix", "template", "images")
    @classmethod
    def _unsupported(cls, value: Any) -> Any:
        if value:
            raise ValueError("not supported by this gateway")
        return value


class _Embed(_Wire):
    model: str = Field(min_length=1)
    input: str | list[str]
    truncate: bool = True
    options: _Options = _Options()
    keep_alive: float | str | None = None


class _Embeddings(_Wire):
    model: str = Field(min_length=1)
    prompt: str = ""
    options: _Options = _Options()
    keep_alive: float | str | None = None


class _Show(_Wire):
    model: str | None = None
    name: str | None = None  # the older spelling


# --- rendering -----------------------------------------------------------------------------------

def error_response(error: GatewayError) -> JSONResponse:
    return JSONResponse({"error": error.message}, status_code=error.status, headers=error.headers)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _final(done: Done) -> dict[str, Any]:
    t: Timings = done.timings
    return {
        "done_reason": done.finish_reason, "done": True,
        "total_duration": t.total_ns, "load_duration": t.load_ns,
        "prompt_eval_count": done.usage.prompt_tokens, "prompt_eval_duration": t.prompt_eval_ns,
        "eval_count": done.usage.completion_tokens, "eval_duration": t.eval_ns,
    }


def _line(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode() + b"\n"


class OllamaAPI:
    def __init__(self, context: Context) -> None:
        self.context = context

    @property
    def routes(self) -> list[Route]:
        return guarded_routes(self.context.pipeline, error_response, "ollama", [
            ("POST", "/api/chat", self.chat),
            ("POST", "/api/generate", self.generate),
            ("POST", "/api/embed", self.embed),
            ("POST", "/api/embeddings", self.embeddings),
            ("GET", "/api/tags", self.tags),
            ("GET", "/api/ps", self.ps),
            ("POST", "/api/show", self.show),
            ("GET", "/api/version", self.version),
        ])

    @property
    def _limit(self) -> int:
        return self.context.settings.max_body_bytes

    # --- generation ------------------------------------------------------------------------------

    async def chat(self, request: Request) -> Response:
        wire = await parse(request, _Chat, self._limit)
        keep_alive = parse_keep_alive(wire.keep_alive)
        if not wire.messages:
            return await self._load_or_unload(request, wire.model, keep_alive, {
                "message": {"role": "assistant", "content": ""}})
        call = typed(lambda: ChatRequest(
            model=wire.model, messages=tuple(Message(role=m.role, content=m.content)
                                             for m in wire.messages),
            sampling=wire.options.sampling(), format=wire.json_format(), keep_alive=keep_alive,
        ))
        events = await self.context.pipeline.generate(caller_of(request), "chat", call)

        def frame(text: str) -> dict[str, Any]:
            return {"message": {"role": "assistant", "content": text}}
        return await self._respond(wire.model, wire.stream, events, frame)

    async def generate(self, request: Request) -> Response:
        wire = await parse(request, _Generate, self._limit)
        keep_alive = parse_keep_alive(wire.keep_alive)
        if not wire.prompt:
            return await self._load_or_unload(request, wire.model, keep_alive, {"response": ""})
        call: ChatRequest | CompletionRequest
        if wire.raw:
            call = typed(lambda: CompletionRequest(
                model=wire.model, prompt=wire.prompt, sampling=wire.options.sampling(),
                format=wire.json_format(), keep_alive=keep_alive))
        else:
            # Ollama applies the model's template to the prompt: a one-turn chat.
            system = () if wire.system is None else (Message(role="system", content=wire.system),)
            call = typed(lambda: ChatRequest(
                model=wire.model,
                messages=(*system, Message(role="user", content=wire.prompt)),
                sampling=wire.options.sampling(), format=wire.json_format(),
                keep_alive=keep_alive))
        events = await self.context.pipeline.generate(caller_of(request), "complete", call)
        return await self._respond(wire.model, wire.stream, events, lambda text: {"response": text})

    async def _load_or_unload(
        self, request: Request, model: str, keep_alive: float | None, empty: dict[str, Any],
    ) -> Response:
        """Ollama's idiom: a request with nothing to generate loads the model, or with
        ``keep_alive: 0`` unloads it."""
        if keep_alive == 0:
            await self.context.pipeline.unload(caller_of(request), model)
            reason = "unload"
        else:
            await self.context.pipeline.load(caller_of(request), model, keep_alive)
            reason = "load"
        return JSONResponse({"model": model, "created_at": _now(), **empty, "done": True,
                             "done_reason": reason})

    async def _respond(
        self, model: str, stream: bool, events: AsyncIterator[Event],
        frame: Callable[[str], dict[str, Any]],
    ) -> Response:
        if stream:
            return StreamingResponse(self._ndjson(model, events, frame),
                                     media_type="application/x-ndjson")
        text, done = await collect(events)
        return JSONResponse({"model": model, "created_at": _now(), **frame(text), **_final(done)})

    @staticmethod
    async def _ndjson(
        model: str, events: AsyncIterator[Event], frame: Callable[[str], dict[str, Any]],
    ) -> AsyncIterator[bytes]:
        try:
            async for event in events:
                if isinstance(event, Chunk):
                    yield _line({"model": model, "created_at": _now(), **frame(event.text),
                                 "done": False})
                else:
                    yield _line({"model": model, "created_at": _now(), **frame(""),
                                 **_final(event)})
        except GatewayError as error:  # after the first byte, errors travel in the stream
            yield _line({"error": error.message})

    # --- embeddings ------------------------------------------------------------------------------

    async def embed(self, request: Request) -> Response:
        wire = await parse(request, _Embed, self._limit)
        inputs = (wire.input,) if isinstance(wire.input, str) else tuple(wire.input)
        call = typed(lambda: EmbedRequest(model=wire.model, inputs=inputs,
                                            truncate=wire.truncate,
                                            keep_alive=parse_keep_alive(wire.keep_alive)))
        result = await self.context.pipeline.embed(caller_of(request), call)
        return JSONResponse({
            "model": wire.model, "embeddings": result.vectors,
            "total_duration": result.timings.total_ns, "load_duration": result.timings.load_ns,
            "prompt_eval_count": result.usage.prompt_tokens,
        })

    async def embeddings(self, request: Request) -> Response:
        wire = await parse(request, _Embeddings, self._limit)
        if not wire.prompt:
            caller_of(request).authorize("embed", self.context.pipeline.resolve(wire.model))
            return JSONResponse({"embedding": []})
        call = typed(lambda: EmbedRequest(model=wire.model, inputs=(wire.prompt,),
                                            keep_alive=parse_keep_alive(wire.keep_alive)))
        result = await self.context.pipeline.embed(caller_of(request), call)
        return JSONResponse({"embedding": result.vectors[0]})

    # --- models --------------------------------------------------------------------------------

    def _entry(self, spec: ModelSpec) -> dict[str, Any]:
        path = spec.path(self.context.settings.models_dir)
        stat = path.stat() if path.exists() else None
        return {
            "name": spec.name, "model": spec.name,
            "modified_at": _rfc3339(stat.st_mtime if stat else self.context.started_at),
            "size": stat.st_size if stat else 0,
            "digest": spec.sha256,
            "details": _details(spec),
        }

    async def tags(self, request: Request) -> Response:
        visible = self.context.pipeline.visible_models(caller_of(request))
        return JSONResponse({"models": [self._entry(spec) for spec in visible]})

    async def ps(self, request: Request) -> Response:
        caller = caller_of(request)
        caller.authorize("models:list")
        models = []
        for pool, expires in self.context.pipeline.models.resident():
            if not caller.may_use(pool.spec):
                continue
            entry = self._entry(pool.spec)
            del entry["modified_at"]
            entry["expires_at"] = _FOREVER if expires is None else _rfc3339(expires)
            entry["size_vram"] = 0
            entry["context_length"] = pool.spec.parameters.num_ctx or 2048
            models.append(entry)
        return JSONResponse({"models": models})

    async def show(self, request: Request) -> Response:
        wire = await parse(request, _Show, self._limit)
        name = wire.model or wire.name
        if not name:
            raise BadRequest("model: field required", param="model")
        spec = self.context.pipeline.resolve(name)
        caller_of(request).require_use(spec)
        entry = self._entry(spec)
        parameters = "\n".join(
            f"{key:<15} {json.dumps(v) if isinstance(v, str) else v}"
            for key, value in spec.parameters.model_dump(exclude_none=True).items()
            for v in (value if isinstance(value, tuple | list) else [value]))
        return JSONResponse({
            "license": spec.details.license or "",
            "modelfile": _modelfile(spec, spec.path(self.context.settings.models_dir)),
            "parameters": parameters,
            "template": spec.template or "",
            "system": spec.system or "",
            "details": _details(spec),
            "model_info": {"general.architecture": spec.details.family or "",
                           "general.parameter_count": spec.details.parameter_size or ""},
            "capabilities": ["completion", "embedding"],
            "modified_at": entry["modified_at"],
        })

    async def version(self, request: Request) -> Response:
        return JSONResponse({"version": __version__})


def _details(spec: ModelSpec) -> dict[str, Any]:
    family = spec.details.family or ""
    return {"parent_model": "", "format": spec.format, "family": family,
            "families": [family] if family else None,
            "parameter_size": spec.details.parameter_size or "",
            "quantization_level": spec.details.quantization_level or ""}


def _modelfile(spec: ModelSpec, path: Path) -> str:
    lines = [f"# Modelfile generated by Vagt for {spec.name}", f"FROM {path}"]
    if spec.template:
        lines.append(f'TEMPLATE """{spec.template}"""')
    if spec.system:
        lines.append(f'SYSTEM """{spec.system}"""')
    for key, value in spec.parameters.model_dump(exclude_none=True).items():
        for v in value if isinstance(value, tuple | list) else [value]:
            lines.append(f"PARAMETER {key} {json.dumps(v) if isinstance(v, str) else v}")
    for message in spec.messages:
        lines.append(f'MESSAGE {message.role} """{message.content}"""')
    return "\n".join(lines) + "\n"
