"""Recover the CDI manifests shown in the OpenShift Virtualization docs seed, as dicts.

The seed is a text extraction of the HTML docs: each YAML example lost its line breaks and indentation
("spec: source: 1 registry: url: <image_url> 2 storage: ...") and carries the docs' callout numbers.
Nesting is therefore recovered with the API's own structural schema (the one the CRDs are generated
from): a key goes to the innermost open mapping whose schema declares it with a compatible value
shape; keys nobody declares go into an open free-form map (labels, annotations, resource lists) or,
as unknown fields, into a mapping that was just opened; a key no open mapping can take ends an
embedded example (e.g. `running:` after a VirtualMachine's dataVolumeTemplates).

Placeholders such as `<image_url>` or `<storage_class>` are replaced before parsing: by the value the
docs' own callouts suggest where there is one (`"0.07"` for a global overhead), by a registry URL where
a URL is required, and otherwise by the placeholder text made into a DNS name (`<source_namespace>` ->
`source-namespace`). The manifests the tests compare against are in `tests/api/manifests.py`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cdi.api.kinds import KINDS
from cdi.api.meta import ObjectMeta
from cdi.api.openapi import Schema, structural_schema

SEED_PATH = Path(__file__).resolve().parents[2].parent / "shared" / "seeds" / "002_ec178c67b446663a.txt"

PLACEHOLDER_VALUES = {
    "image_url": "docker://quay.io/containerdisks/fedora:latest",
    "new_global_value": "0.07",
    "new_value_for_this_storage_class": "0.04",
    "storage_class_name": "mystorageclass",
}

_PLACEHOLDER = re.compile(r"<([A-Za-z0-9_ -]+)>")
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|\'[^\']*\'|\S+')
_ELISION = re.compile(r"#\s*\.\.\.")
_CONTINUATION = re.compile(r"^([^\s:]+:(\s|$)|#)")


@dataclass(frozen=True)
class SeedExample:
    """Where one example is in the seed and how to read it."""

    name: str
    section: str
    anchor: str  # a substring of the line holding (or introducing) the example
    start: str  # where the CDI object (or the list of them) starts
    kind: str
    as_list: bool = False  # `start` is a key holding a list of `kind` objects (dataVolumeTemplates)
    wrapper: dict[str, Any] = field(default_factory=dict)  # fields the snippet leaves implicit


def substitute_placeholders(text: str) -> str:
    def replace(match: re.Match[str]) -> str:
        key = match.group(1).strip().lower().replace(" ", "_")
        return PLACEHOLDER_VALUES.get(key, key.replace("_", "-"))

    return _PLACEHOLDER.sub(replace, text)


def example_lines(seed: str, example: SeedExample) -> range:
    """The seed lines (0-based) an example spans: from the one holding `start` while YAML continues."""
    lines = seed.splitlines()
    first = next(i for i, line in enumerate(lines) if example.anchor in line)
    while example.start not in lines[first]:
        first += 1
    last = first + 1
    while last < len(lines) and _CONTINUATION.match(lines[last]):
        last += 1
    return range(first, last)


def example_text(seed: str, example: SeedExample) -> str:
    """The flattened snippet from `start` on, multi-line snippets joined into one line."""
    lines = seed.splitlines()
    span = example_lines(seed, example)
    first = lines[span.start]
    return " ".join([first[first.index(example.start):], *(lines[i] for i in span[1:])])


def load_examples(seed: str, example: SeedExample) -> list[dict[str, Any]]:
    """The manifests of one example (several for a list of templates), placeholders substituted."""
    text = substitute_placeholders(_ELISION.sub(" ", example_text(seed, example)))
    tokens = _TOKEN.findall(text)
    info = KINDS[example.kind]
    if not example.as_list:
        doc = _Reader(tokens).read_object(structural_schema(info.model))
        return [{**example.wrapper, **doc}]
    list_schema = {"type": "array", "items": structural_schema(info.model)}
    items = _Reader(tokens[1:]).read_list(list_schema)
    return [{"apiVersion": info.api_version, "kind": info.kind, **example.wrapper, **item} for item in items]


def _meta_aware(schema: Schema) -> Schema:
    """Object schemas carry `metadata` opaquely; read it with ObjectMeta's real shape instead."""
    props = schema.get("properties", {})
    if "metadata" in props and "spec" in props:
        return {**schema, "properties": {**props, "metadata": _OBJECT_META}}
    return schema


_OBJECT_META = structural_schema(ObjectMeta)


@dataclass
class _Frame:
    container: dict[str, Any] | list[Any]
    schema: Schema
    fresh: bool = True


class _Reader:
    """Rebuilds nested YAML from flattened tokens, guided by structural schemas."""

    def __init__(self, tokens: list[str]) -> None:
        self.tokens = tokens
        self.pos = 0
        self.stack: list[_Frame] = []

    def read_object(self, schema: Schema) -> dict[str, Any]:
        root: dict[str, Any] = {}
        self.stack = [_Frame(root, _meta_aware(schema), fresh=False)]
        self._run()
        return root

    def read_list(self, schema: Schema) -> list[Any]:
        items: list[Any] = []
        self.stack = [_Frame(items, schema, fresh=False)]
        self._run()
        return items

    def _run(self) -> None:
        while self.pos < len(self.tokens):
            token = self.tokens[self.pos]
            if token == "-":
                self._list_item()
            elif _is_key(token):
                if not self._key(token[:-1]):
                    return  # no open mapping takes this key: the embedded example has ended
            else:
                raise ValueError(f"unexpected value token {token!r} at {self.pos}")

    def _key(self, key: str) -> bool:
        self.pos += 1
        self._skip_callout(key)
        shape = self._shape()
        depth = self._owner(key, shape)
        if depth is None:
            return False
        del self.stack[depth + 1:]
        frame = self.stack[-1]
        assert isinstance(frame.container, dict)
        frame.fresh = False
        self._store(frame.container, key, _child_schema(frame.schema, key), shape)
        return True

    def _list_item(self) -> None:
        self.pos += 1
        shape = self._shape()
        for depth in range(len(self.stack) - 1, -1, -1):
            frame = self.stack[depth]
            if isinstance(frame.container, list) and _accepts(frame.schema.get("items", {}), shape):
                del self.stack[depth + 1:]
                break
        else:
            raise ValueError(f"list item at token {self.pos} has no open list")
        items = self.stack[-1]
        assert isinstance(items.container, list)
        item_schema = _meta_aware(items.schema.get("items", {}))
        if shape == "map" and _is_key(self._peek(0)):
            child: dict[str, Any] = {}
            items.container.append(child)
            self.stack.append(_Frame(child, item_schema))
        else:
            items.container.append(self._scalar())

    def _store(self, container: dict[str, Any], key: str, schema: Schema, shape: str) -> None:
        if shape == "map" and _is_key(self._peek(0)):
            container[key] = {}
            self.stack.append(_Frame(container[key], _meta_aware(schema)))
        elif shape == "list" and self._peek(0) == "-":
            container[key] = []
            self.stack.append(_Frame(container[key], schema))
        else:
            container[key] = self._scalar()

    def _skip_callout(self, key: str) -> None:
        """In "registry: 3 url: ..." the 3 is a callout, unless the key takes a number."""
        if not (self._peek(0).isdigit() and (_is_key(self._peek(1)) or self._peek(1) in ("-", ""))):
            return
        self.pos += 1
        depth = self._owner(key, self._shape())
        prop = self.stack[depth].schema.get("properties", {}).get(key, {}) if depth is not None else {}
        if prop.get("type") not in ("object", "array"):
            self.pos -= 1

    def _shape(self) -> str:
        """The shape of the value ahead: "map", "list", "null" or "scalar"; `{}`/`[]` count as map/list."""
        nxt = self._peek(0)
        if _is_key(nxt) or nxt == "{}":
            return "map"
        if nxt in ("-", "[]"):
            return "list"
        return "null" if nxt in ("null", "~", "") else "scalar"

    def _scalar(self) -> Any:
        words: list[str] = []
        while self.pos < len(self.tokens) and self.tokens[self.pos] != "-" and not _is_key(self.tokens[self.pos]):
            words.append(self.tokens[self.pos])
            self.pos += 1
        while len(words) > 1 and words[-1].isdigit():
            words.pop()  # trailing callout numbers: "storage: 10Gi 3"
        return yaml.safe_load(" ".join(words)) if words else None

    def _owner(self, key: str, shape: str) -> int | None:
        """The depth of the open mapping that takes `key`, innermost first."""
        maps = [(d, f) for d, f in enumerate(self.stack) if isinstance(f.container, dict)]
        for depth, frame in reversed(maps):
            prop = frame.schema.get("properties", {}).get(key)
            if prop is not None and key not in frame.container and _accepts(prop, shape):
                return depth
        for depth, frame in reversed(maps):
            extra = frame.schema.get("additionalProperties")
            if isinstance(extra, dict) and key not in frame.container and _accepts(extra, shape):
                return depth
            if frame.schema.get("x-kubernetes-preserve-unknown-fields") and not frame.schema.get("properties"):
                return depth
        if maps and maps[-1][1].fresh and maps[-1][0] == len(self.stack) - 1:
            return maps[-1][0]  # an unknown field as the first key of a mapping just opened
        return None

    def _peek(self, offset: int) -> str:
        index = self.pos + offset
        return self.tokens[index] if index < len(self.tokens) else ""


def _is_key(token: str) -> bool:
    return len(token) > 1 and token.endswith(":") and token[0] not in "\"'"


def _child_schema(schema: Schema, key: str) -> Schema:
    prop = schema.get("properties", {}).get(key)
    if prop is not None:
        return dict(prop)
    extra = schema.get("additionalProperties")
    return dict(extra) if isinstance(extra, dict) else {"x-kubernetes-preserve-unknown-fields": True}


def _accepts(schema: Schema, shape: str) -> bool:
    """Whether a value of this shape fits the schema (null fits anything)."""
    kind = schema.get("type")
    if shape == "map":
        return kind in (None, "object")
    if shape == "list":
        return kind in (None, "array")
    return shape == "null" or kind not in ("object", "array")
