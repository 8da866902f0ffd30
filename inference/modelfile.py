"""Read an Ollama Modelfile into a catalogue entry.

Supported: FROM (a catalogue model or a .gguf/.onnx file), PARAMETER, SYSTEM, TEMPLATE (Go
template, translated to Jinja), MESSAGE and LICENSE. Any other directive — ADAPTER, for one — is
refused with its line number, never silently ignored.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from inference.errors import CatalogueError
from inference.gotemplate import go_to_jinja
from inference.registry import Catalogue, Details, ModelSpec, sha256_of
from inference.types import Message, Sampling

_INSTRUCTION = re.compile(r"^\s*([A-Za-z]+)(?:\s+(.*))?$")
_FORMATS = {".gguf": "gguf", ".onnx": "onnx"}
_SUPPORTED = ("FROM", "PARAMETER", "SYSTEM", "TEMPLATE", "MESSAGE", "LICENSE")


def _instructions(text: str) -> list[tuple[int, str, str]]:
    """(line number, INSTRUCTION, argument), with the argument's quotes removed: a triple-quoted
    or "quoted" value, or for MESSAGE the content after the role."""
    lines = text.splitlines()
    result: list[tuple[int, str, str]] = []
    index = 0
    while index < len(lines):
        number, line = index + 1, lines[index]
        index += 1
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _INSTRUCTION.match(line)
        if match is None:
            raise CatalogueError(f"line {number}: cannot read {line.strip()[:40]!r}")
        name, argument = match.group(1).upper(), (match.group(2) or "").strip()
        if argument.startswith('"""') or re.match(r'^\w+\s+"""', argument):
            # A triple-quoted argument (possibly after a word, as in MESSAGE user """…""").
            prefix, _, body = argument.partition('"""')
            while '"""' not in body:
                if index >= len(lines):
                    raise CatalogueError(f"line {number}: unterminated \"\"\" string")
                body += "\n" + lines[index]
                index += 1
            body, _, after = body.partition('"""')
            if after.strip():
                raise CatalogueError(f"line {number}: unexpected text after closing \"\"\"")
            argument = prefix + body
        elif name == "MESSAGE":
            role, _, content = argument.partition(" ")
            argument = f"{role} {_unquote(content)}"
        else:
            argument = _unquote(argument)
        result.append((number, name, argument))
    return result


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        try:
            unquoted: str = json.loads(value)
        except json.JSONDecodeError:
            return value[1:-1]
        return unquoted
    return value


def parse_modelfile(text: str, *, name: str, base: Path, catalogue: Catalogue) -> ModelSpec:
    """The catalogue entry described by a Modelfile; relative FROM paths resolve against base."""
    entry: dict[str, Any] = {}
    parameters: dict[str, Any] = {}
    stops: list[str] = []
    messages: list[Message] = []
    seen_from = False
    for number, instruction, argument in _instructions(text):
        where = f"line {number}"
        if instruction not in _SUPPORTED:
            raise CatalogueError(
                f"{where}: {instruction} is not supported (supported: {', '.join(_SUPPORTED)})")
        if instruction == "FROM":
            entry.update(_from(argument, base, catalogue, where))
            seen_from = True
        elif instruction == "PARAMETER":
            key, _, value = argument.partition(" ")
            if key not in Sampling.model_fields:
                known = ", ".join(Sampling.model_fields)
                raise CatalogueError(f"{where}: unknown parameter '{key}' (known: {known})")
            if key == "stop":
                stops.append(_unquote(value))
            else:
                parameters[key] = value
        elif instruction == "SYSTEM":
            entry["system"] = argument
        elif instruction == "TEMPLATE":
            entry["template"] = go_to_jinja(argument)
        elif instruction == "LICENSE":
            entry["license"] = argument
        elif instruction == "MESSAGE":
            role, _, content = argument.partition(" ")
            if role not in ("system", "user", "assistant"):
                raise CatalogueError(f"{where}: MESSAGE role must be system, user or assistant")
            messages.append(Message(role=role, content=content))
    if not seen_from:
        raise CatalogueError("a Modelfile needs a FROM line")
    inherited: Sampling = entry.pop("parameters", Sampling())
    try:
        if stops:
            parameters["stop"] = tuple(stops)
        sampling = Sampling.model_validate(parameters).over(inherited)
        details: Details = entry.pop("details", Details())
        if "license" in entry:
            details = details.model_copy(update={"license": entry.pop("license")})
        return ModelSpec.model_validate({
            **entry, "name": name, "aliases": (), "parameters": sampling, "details": details,
            "messages": tuple(messages) or entry.get("messages", ()),
        })
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(p) for p in error["loc"])
        raise CatalogueError(f"PARAMETER {field}: {error['msg']}") from None


def _from(argument: str, base: Path, catalogue: Catalogue, where: str) -> dict[str, Any]:
    target = argument
    parent = catalogue.find(target)
    if parent is not None:
        inherited = parent.model_dump(exclude={"name", "aliases", "source"})
        inherited["parameters"] = parent.parameters
        inherited["details"] = parent.details
        return inherited
    path = Path(target).expanduser()
    path = path if path.is_absolute() else (base / path).resolve()
    if not path.is_file():
        raise CatalogueError(
            f"{where}: FROM {target}: no model in the catalogue or file by that name")
    model_format = _FORMATS.get(path.suffix.lower())
    if model_format is None:
        raise CatalogueError(f"{where}: FROM {target}: expected a .gguf or .onnx file")
    return {"file": str(path), "format": model_format, "sha256": sha256_of(path)}
