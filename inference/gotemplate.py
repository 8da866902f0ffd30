"""Translate an Ollama (Go text/template) chat template into the Jinja form llama.cpp renders.

Covers what Ollama's chat templates use: ``.System``, ``.Prompt``, ``.Response``,
``range .Messages`` (also ``range $i, $m := .Messages``), ``.Role``/``.Content``, ``if``/``else
if``/``else``/``end`` with ``eq``/``ne``/``and``/``or``/``not``, and ``{{-``/``-}}`` trimming.
Anything else is refused with the construct named, rather than rendered wrongly.
"""

from __future__ import annotations

import re

from inference.errors import CatalogueError

_ACTION = re.compile(r"\{\{(-?)\s*(.*?)\s*(-?)\}\}", re.S)
_STRING = r'"(?:[^"\\]|\\.)*"'
_FIELD = re.compile(r"^(\$\w*)?((?:\.\w+)+)$")

# Collect the system prompt and the last user prompt for the legacy .System/.Prompt style.
_PREAMBLE = (
    "{%- set ns = namespace(system='', prompt='') -%}"
    "{%- for m in messages -%}"
    "{%- if m.role == 'system' -%}{%- set ns.system = m.content -%}"
    "{%- elif m.role == 'user' -%}{%- set ns.prompt = m.content -%}{%- endif -%}"
    "{%- endfor -%}"
)


def go_to_jinja(template: str) -> str:
    out: list[str] = [_PREAMBLE]
    blocks: list[str] = []  # "if" or "for"
    loop_vars: dict[str, str] = {}  # Go variable → Jinja expression inside range
    position = 0
    pending_newline = False
    for match in _ACTION.finditer(template):
        text = template[position:match.start()]
        if pending_newline and text.startswith("\n"):
            text = "\n" + text  # Jinja's trim_blocks eats one newline after a block tag
        out.append(text)
        pending_newline = False
        left, body, right = match.groups()
        position = match.end()
        in_loop = "for" in blocks
        words = body.split(None, 1)
        keyword = words[0] if words else ""
        open_, close = ("{%-" if left else "{%+"), ("-%}" if right else "%}")
        if keyword == "if":
            blocks.append("if")
            out.append(f"{open_} if {_condition(words[1], in_loop, loop_vars)} {close}")
        elif keyword == "else" and body.startswith("else if "):
            condition = _condition(body[len("else if "):], in_loop, loop_vars)
            out.append(f"{open_} elif {condition} {close}")
        elif body == "else":
            out.append(f"{open_} else {close}")
        elif body == "end":
            if not blocks:
                raise CatalogueError("TEMPLATE: {{ end }} without a matching if or range")
            out.append(f"{open_} end{blocks.pop()} {close}")
            if not blocks:
                loop_vars.clear()
        elif keyword == "range":
            out.append(f"{open_} for message in messages {close}")
            blocks.append("for")
            loop_vars.update(_range_vars(words[1] if len(words) > 1 else ""))
        else:
            out.append(("{{-" if left else "{{") + f" {_value(body, in_loop, loop_vars)} "
                       + ("-}}" if right else "}}"))
            continue
        pending_newline = not right
    if blocks:
        raise CatalogueError(
            f"TEMPLATE: {len(blocks)} if/range block(s) not closed with {{{{ end }}}}")
    tail = template[position:]
    out.append("\n" + tail if pending_newline and tail.startswith("\n") else tail)
    jinja = "".join(out)
    # Jinja drops one trailing newline of its source; Go keeps it.
    return jinja + "\n" if jinja.endswith("\n") else jinja


def _range_vars(expression: str) -> dict[str, str]:
    expression = expression.strip()
    if expression == ".Messages":
        return {}
    m = re.fullmatch(r"(\$\w+)\s*,\s*(\$\w+)\s*:=\s*\.Messages", expression)
    if m:
        return {m.group(1): "loop.index0", m.group(2): "message"}
    m = re.fullmatch(r"(\$\w+)\s*:=\s*\.Messages", expression)
    if m:
        return {m.group(1): "message"}
    raise CatalogueError(f"TEMPLATE: unsupported range {{{{ range {expression} }}}}")


def _value(expression: str, in_loop: bool, loop_vars: dict[str, str]) -> str:
    expression = expression.strip()
    if re.fullmatch(_STRING, expression):
        return expression
    m = _FIELD.match(expression)
    if m:
        variable, path = m.group(1), m.group(2)[1:].split(".")
        if variable == "$" or (variable is None and not in_loop):
            return _root_field(path, expression)
        if variable is None:  # inside range, "." is the current message
            base = "message"
        elif variable in loop_vars:
            base = loop_vars[variable]
        else:
            raise CatalogueError(f"TEMPLATE: unknown variable in {{{{ {expression} }}}}")
        if base != "message" or path not in (["Role"], ["Content"]):
            raise CatalogueError(f"TEMPLATE: unsupported field {{{{ {expression} }}}}")
        return f"message.{path[0].lower()}"
    if expression in loop_vars:
        return loop_vars[expression]
    raise CatalogueError(f"TEMPLATE: unsupported construct {{{{ {expression} }}}}")


def _root_field(path: list[str], expression: str) -> str:
    known = {"System": "ns.system", "Prompt": "ns.prompt", "Response": "''"}
    if len(path) == 1 and path[0] in known:
        return known[path[0]]
    raise CatalogueError(f"TEMPLATE: unsupported field {{{{ {expression} }}}}")


def _condition(expression: str, in_loop: bool, loop_vars: dict[str, str]) -> str:
    tokens = re.findall(rf"{_STRING}|\(|\)|[^\s()]+", expression)
    jinja, rest = _call(tokens, in_loop, loop_vars)
    if rest:
        raise CatalogueError(f"TEMPLATE: unsupported condition {{{{ if {expression} }}}}")
    return jinja


def _call(tokens: list[str], in_loop: bool, loop_vars: dict[str, str]) -> tuple[str, list[str]]:
    """Parse one operand (a value, or a parenthesised/prefix function call) from ``tokens``."""
    if not tokens:
        raise CatalogueError("TEMPLATE: incomplete condition")
    head, rest = tokens[0], tokens[1:]
    operators = {"eq": "==", "ne": "!=", "and": "and", "or": "or"}
    if head == "(":
        inner, rest = _call(rest, in_loop, loop_vars)
        if not rest or rest[0] != ")":
            raise CatalogueError("TEMPLATE: unbalanced parentheses in a condition")
        return inner, rest[1:]
    if head in operators:
        left, rest = _call(rest, in_loop, loop_vars)
        right, rest = _call(rest, in_loop, loop_vars)
        return f"({left} {operators[head]} {right})", rest
    if head == "not":
        operand, rest = _call(rest, in_loop, loop_vars)
        return f"(not {operand})", rest
    return _value(head, in_loop, loop_vars), rest
