"""kubectl's `-o jsonpath=TEMPLATE` for `cdi get`: literal text with `{...}` actions, rendered against the
object (or the v1 List of objects) being printed.

Actions: a JSONPath expression from `cdi.cli.jsonpath` (`{.items..status.filesystemOverhead}`; several
matches are joined with a space, as kubectl does), a quoted literal (`{"\\t"}`, `{'\\n'}`, with the usual
backslash escapes), and `{range EXPR}...{end}`, which renders its body once for each match, each
relative to that match. Missing fields render as nothing (kubectl's `get` allows missing keys) and
nothing is added at the end: kubectl prints no trailing newline either.

`compile_template` parses once and raises `JsonPathError` with what is wrong; `Template.render` is pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cdi.cli.jsonpath import JsonPath, JsonPathError, compile_path, render_value

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'", "0": "\0"}


@dataclass(frozen=True)
class Text:
    value: str


@dataclass(frozen=True)
class Expression:
    path: JsonPath


@dataclass(frozen=True)
class Range:
    path: JsonPath
    body: tuple[Node, ...]


Node = Text | Expression | Range


@dataclass(frozen=True)
class Template:
    """A parsed template; `render` applies it to a document."""

    text: str
    nodes: tuple[Node, ...]

    def render(self, document: Any) -> str:
        return _render(self.nodes, document)


def _render(nodes: tuple[Node, ...], document: Any) -> str:
    parts: list[str] = []
    for node in nodes:
        if isinstance(node, Text):
            parts.append(node.value)
        elif isinstance(node, Expression):
            parts.append(" ".join(render_value(value) for value in node.path.find(document)))
        else:
            found = node.path.find(document)
            items = found[0] if len(found) == 1 and isinstance(found[0], list) else found
            parts.extend(_render(node.body, item) for item in items)
    return "".join(parts)


def compile_template(text: str) -> Template:
    """Parse `text`; `JsonPathError` for an unbalanced brace, an unmatched `{end}` or a bad expression."""
    stack: list[tuple[JsonPath | None, list[Node]]] = [(None, [])]
    position = 0
    while position < len(text):
        start = text.find("{", position)
        if start < 0:
            stack[-1][1].append(Text(text[position:]))
            break
        if start > position:
            stack[-1][1].append(Text(text[position:start]))
        end = _closing_brace(text, start)
        _action(text, text[start + 1:end].strip(), stack)
        position = end + 1
    if len(stack) > 1:
        raise JsonPathError(f"unclosed {{range}} in JSONPath template {text!r}: add {{end}}")
    return Template(text, tuple(stack[0][1]))


def _closing_brace(text: str, start: int) -> int:
    quote = ""
    for index in range(start + 1, len(text)):
        char = text[index]
        if quote:
            if char == "\\":
                continue
            if char == quote and text[index - 1] != "\\":
                quote = ""
        elif char in "\"'":
            quote = char
        elif char == "}":
            return index
    raise JsonPathError(f"unclosed action in JSONPath template {text!r}")


def _action(text: str, action: str, stack: list[tuple[JsonPath | None, list[Node]]]) -> None:
    if not action:
        raise JsonPathError(f"empty action {{}} in JSONPath template {text!r}")
    if action == "end":
        if len(stack) == 1:
            raise JsonPathError(f"{{end}} without {{range}} in JSONPath template {text!r}")
        path, body = stack.pop()
        assert path is not None
        stack[-1][1].append(Range(path, tuple(body)))
    elif action.startswith("range ") or action.startswith("range\t"):
        stack.append((compile_path(action[len("range"):].strip()), []))
    elif action[0] in "\"'":
        stack[-1][1].append(Text(_unquote(text, action)))
    else:
        stack[-1][1].append(Expression(compile_path(action)))


def _unquote(text: str, literal: str) -> str:
    if len(literal) < 2 or literal[-1] != literal[0]:
        raise JsonPathError(f"unterminated string {literal} in JSONPath template {text!r}")
    body, out, index = literal[1:-1], [], 0
    while index < len(body):
        char = body[index]
        if char == "\\" and index + 1 < len(body):
            out.append(_ESCAPES.get(body[index + 1], body[index + 1]))
            index += 2
        else:
            out.append(char)
            index += 1
    return "".join(out)
