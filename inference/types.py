"""Typed requests and results that travel from the API adapters through the pipeline to a pool.

Requests are frozen pydantic models (they cross a trust boundary); the per-token results are
slotted dataclasses because they sit on the hot path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Role = Literal["system", "user", "assistant", "tool"]
FinishReason = Literal["stop", "length"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Message(_Frozen):
    role: Role
    content: str


class Sampling(_Frozen):
    """Generation parameters. ``None`` means: use the model's default from the catalogue."""

    temperature: Annotated[float, Field(ge=0.0, le=2.0)] | None = None
    top_p: Annotated[float, Field(gt=0.0, le=1.0)] | None = None
    top_k: Annotated[int, Field(ge=0)] | None = None
    min_p: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    repeat_penalty: Annotated[float, Field(ge=0.0)] | None = None
    presence_penalty: Annotated[float, Field(ge=-2.0, le=2.0)] | None = None
    frequency_penalty: Annotated[float, Field(ge=-2.0, le=2.0)] | None = None
    seed: int | None = None
    num_ctx: Annotated[int, Field(ge=16)] | None = None
    num_predict: Annotated[int, Field(ge=-1)] | None = None
    stop: tuple[str, ...] | None = None

    def over(self, defaults: Sampling) -> Sampling:
        """These parameters, with every unset one taken from ``defaults``."""
        mine = self.model_dump(exclude_none=True)
        return defaults.model_copy(update=mine)


class JsonFormat(_Frozen):
    """Constrain the output to JSON, optionally to a JSON Schema."""

    json_schema: dict[str, Any] | None = None


class ChatRequest(_Frozen):
    model: str
    messages: tuple[Message, ...] = Field(min_length=1)
    sampling: Sampling = Sampling()
    format: JsonFormat | None = None
    keep_alive: float | None = None  # seconds; negative keeps the model loaded forever


class CompletionRequest(_Frozen):
    model: str
    prompt: str
    suffix: str | None = None
    sampling: Sampling = Sampling()
    format: JsonFormat | None = None
    keep_alive: float | None = None


class EmbedRequest(_Frozen):
    model: str
    inputs: tuple[str, ...] = Field(min_length=1)
    truncate: bool = True
    keep_alive: float | None = None


@dataclass(slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(slots=True)
class Timings:
    """Durations in nanoseconds, as Ollama reports them."""

    load_ns: int = 0
    prompt_eval_ns: int = 0
    eval_ns: int = 0
    total_ns: int = 0


@dataclass(slots=True)
class Chunk:
    """A piece of generated text."""

    text: str


@dataclass(slots=True)
class Done:
    """The end of a generation."""

    finish_reason: FinishReason
    usage: Usage = field(default_factory=Usage)
    timings: Timings = field(default_factory=Timings)


@dataclass(slots=True)
class Embeddings:
    vectors: list[list[float]]
    usage: Usage
    timings: Timings


Event = Chunk | Done
