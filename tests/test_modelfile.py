"""Ollama Modelfiles become catalogue entries; Go chat templates become Jinja templates."""

from __future__ import annotations

from pathlib import Path

import pytest
from llama_cpp import Llama
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from inference.errors import CatalogueError
from inference.gotemplate import go_to_jinja
from inference.modelfile import parse_modelfile
from inference.registry import Catalogue, sha256_of

CHATML_GO = """{{- range .Messages }}<|im_start|>{{ .Role }}
{{ .Content }}<|im_end|>
{{ end }}<|im_start|>assistant
"""

MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Hello"},
    {"role": "assistant", "content": "Hi."},
    {"role": "user", "content": "Name a colour."},
]


def render(template: str, messages: list[dict[str, str]]) -> str:
    formatter = Jinja2ChatFormatter(template=template, eos_token="<|im_end|>",
                                    bos_token="<|im_start|>")
    return formatter(messages=messages).prompt  # type: ignore[arg-type]


def test_translated_chatml_matches_the_models_own_template(model_path: Path) -> None:
    llm = Llama(model_path=str(model_path), vocab_only=True, verbose=False)
    own = render(llm.metadata["tokenizer.chat_template"], MESSAGES)
    assert render(go_to_jinja(CHATML_GO), MESSAGES) == own


def test_legacy_system_prompt_template() -> None:
    go = ("{{ if .System }}<|system|>{{ .System }}\n{{ end }}"
          "<|user|>{{ .Prompt }}\n<|assistant|>{{ .Response }}")
    assert render(go_to_jinja(go), MESSAGES) == (
        "<|system|>You are terse.\n<|user|>Name a colour.\n<|assistant|>")
    assert render(go_to_jinja(go), MESSAGES[1:2]) == "<|user|>Hello\n<|assistant|>"


def test_conditions_and_range_variables() -> None:
    go = ('{{ range $i, $m := .Messages }}{{ if eq $m.Role "user" }}U{{ $i }}:{{ $m.Content }}'
          '{{ else if and (ne $m.Role "system") (not (eq $m.Role "tool")) }}A:{{ $m.Content }}'
          "{{ end }};{{ end }}")
    assert render(go_to_jinja(go), MESSAGES) == ";U1:Hello;A:Hi.;U3:Name a colour.;"


@pytest.mark.parametrize(("go", "message"), [
    ("{{ .Tools }}", "unsupported field"),
    ("{{ range .Tools }}x{{ end }}", "unsupported range"),
    ("{{ if .System }}x", "not closed"),
    ("x{{ end }}", "without a matching"),
    ("{{ json .Messages }}", "unsupported construct"),
])
def test_unsupported_template_constructs_are_named(go: str, message: str) -> None:
    with pytest.raises(CatalogueError, match=message):
        go_to_jinja(go)


def test_modelfile_from_a_catalogue_model() -> None:
    library = Catalogue.library()
    text = '''# a Modelfile
FROM smollm2
PARAMETER temperature 0.2
PARAMETER stop "<|im_end|>"
PARAMETER stop "User:"
PARAMETER num_ctx 4096
SYSTEM """You answer in French.
Briefly."""
TEMPLATE """''' + CHATML_GO + '''"""
MESSAGE user Bonjour
MESSAGE assistant """Salut !"""
LICENSE """MIT"""
'''
    spec = parse_modelfile(text, name="french", base=Path("."), catalogue=library)
    parent = library.resolve("smollm2")
    assert spec.name == "french"
    assert spec.file == parent.file
    assert spec.sha256 == parent.sha256
    assert spec.parameters.temperature == 0.2
    assert spec.parameters.top_p == parent.parameters.top_p  # inherited
    assert spec.parameters.num_ctx == 4096
    assert spec.parameters.stop == ("<|im_end|>", "User:")
    assert spec.system == "You answer in French.\nBriefly."
    assert spec.template is not None
    assert "for message in messages" in spec.template
    assert [(m.role, m.content) for m in spec.messages] == [
        ("user", "Bonjour"), ("assistant", "Salut !")]
    assert spec.details.license == "MIT"


def test_modelfile_from_a_file(tmp_path: Path) -> None:
    weights = tmp_path / "tiny.gguf"
    weights.write_bytes(b"GGUF")
    spec = parse_modelfile("FROM ./tiny.gguf\n", name="tiny", base=tmp_path,
                           catalogue=Catalogue())
    assert spec.file == str(weights)
    assert spec.format == "gguf"
    assert spec.sha256 == sha256_of(weights)


@pytest.mark.parametrize(("text", "message"), [
    ("FROM smollm2\nADAPTER ./lora.gguf\n", "line 2: ADAPTER is not supported"),
    ("FROM smollm2\nPARAMETER mirostat 2\n", "unknown parameter 'mirostat'"),
    ("FROM smollm2\nPARAMETER temperature hot\n", "temperature"),
    ("FROM smollm2\nPARAMETER temperature 7\n", "temperature"),
    ("PARAMETER temperature 1\n", "needs a FROM"),
    ("FROM nothing-like-this\n", "line 1: FROM nothing-like-this"),
    ("FROM smollm2\nSYSTEM \"\"\"open\n", "unterminated"),
    ("FROM smollm2\nMESSAGE wizard hi\n", "MESSAGE role"),
])
def test_modelfile_errors_are_clear(text: str, message: str) -> None:
    with pytest.raises(CatalogueError, match=message):
        parse_modelfile(text, name="x", base=Path("."), catalogue=Catalogue.library())
