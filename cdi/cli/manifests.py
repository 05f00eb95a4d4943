"""Reading manifests for `cdi apply`, `cdi create` and `cdi delete -f`: files, directories and stdin.

Every source is parsed completely before anything is written, so a YAML syntax error (reported with
its file, line and column) leaves the cluster untouched. Multi-document YAML and JSON are accepted;
empty documents are skipped and `kind: List` documents contribute their items, as kubectl does.
Timestamps stay strings (as in JSON) rather than becoming Python datetimes. Checking a document
against the API is the caller's job (`cdi.cli.apply`).

Input is bounded, so a hostile manifest costs milliseconds and one error line: a source may hold at
most `MAX_SOURCE_BYTES` and `MAX_DOCUMENTS`, nest at most `MAX_DEPTH` levels, and aliases may not
expand a document past `MAX_EXPANDED_NODES` nodes (a "billion laughs" composes to a few dozen nodes
that would expand to billions; PyYAML would share them, but every walk over the result — merging,
validation, JSON — would not). Each document's node graph is measured before it is constructed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import yaml
from yaml.nodes import MappingNode, Node, SequenceNode

from cdi.cli.errors import ManifestProblem
from cdi.cluster.protocol import Object

STDIN = "-"
_EXTENSIONS = (".yaml", ".yml", ".json")
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"
MAX_SOURCE_BYTES = 16 << 20
MAX_DOCUMENTS = 5000
MAX_DEPTH = 100
MAX_EXPANDED_NODES = 1_000_000


class _TooDeep(Exception):
    pass


class _Loader(yaml.SafeLoader):
    """The safe loader without YAML 1.1 timestamps ("2024-05-01T12:00:00Z" stays a string), which stops
    composing past `MAX_DEPTH` levels instead of recursing until Python gives up."""

    _depth = 0

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _TooDeep
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


_Loader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag != _TIMESTAMP_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


@dataclass(frozen=True)
class Manifest:
    """One object from a manifest source, with where it came from for error messages."""

    source: str
    document: int  # 1-based position within the source
    object: Object

    @property
    def name(self) -> str:
        return str((self.object.get("metadata") or {}).get("name") or "")


def read_manifests(filenames: list[str], stdin: TextIO) -> list[Manifest]:
    """Every object in the given files, directories (their .yaml/.yml/.json files) and stdin ("-")."""
    found: list[Manifest] = []
    for source, text in _sources(filenames, stdin):
        found.extend(parse_manifests(text, source))
    return found


def parse_manifests(text: str, source: str) -> list[Manifest]:
    """The objects in one YAML/JSON text; `ManifestProblem` for syntax errors, non-objects and input
    past the bounds."""
    if len(text) > MAX_SOURCE_BYTES:
        raise ManifestProblem(f"error parsing {source}: larger than {MAX_SOURCE_BYTES >> 20} MiB")
    try:
        documents = _load_all(text, source)
    except (_TooDeep, RecursionError):
        raise ManifestProblem(f"error parsing {source}: nested more than {MAX_DEPTH} levels deep") from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        raise ManifestProblem(f"error parsing {source}: {where}{e.problem or e.context}") from e
    except yaml.YAMLError as e:
        raise ManifestProblem(f"error parsing {source}: {e}") from e
    found: list[Manifest] = []
    for number, document in enumerate(documents, start=1):
        if document is None:
            continue
        for obj in _objects(document, source, number):
            found.append(Manifest(source, number, obj))
    return found


def _load_all(text: str, source: str) -> list[Any]:
    """`yaml.load_all`, with each document's node graph measured before it is turned into objects."""
    loader = _Loader(text)
    documents: list[Any] = []
    try:
        while loader.check_node():
            if len(documents) == MAX_DOCUMENTS:
                raise ManifestProblem(f"error parsing {source}: more than {MAX_DOCUMENTS} documents")
            node = loader.get_node()
            if node is not None:
                _check_size(node, source, len(documents) + 1)
            documents.append(loader.construct_document(node) if node is not None else None)
    finally:
        loader.dispose()
    return documents


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _check_size(root: Node, source: str, number: int) -> None:
    """Refuse a document nested past `MAX_DEPTH`, or whose aliases expand it past `MAX_EXPANDED_NODES`.

    Iterative, and each distinct node is sized once (aliases are the same node object), so this is
    linear in the composed graph however large the expansion; a node reached again while its own size
    is being computed is a recursive alias, which no manifest needs.
    """
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[Node, int, bool]] = [(root, 1, False)]
    while stack:
        node, depth, expanded = stack.pop()
        key = id(node)
        if expanded:
            open_nodes.discard(key)
            sizes[key] = 1 + sum(sizes[id(child)] for child in _children(node))
            if sizes[key] > MAX_EXPANDED_NODES:
                raise ManifestProblem(f"error parsing {source}: document {number} expands to more than "
                                      f"{MAX_EXPANDED_NODES} nodes through YAML aliases; refused")
            continue
        if key in sizes:
            continue
        if key in open_nodes:
            raise ManifestProblem(f"error parsing {source}: document {number} has a recursive YAML alias")
        if depth > MAX_DEPTH:
            raise ManifestProblem(f"error parsing {source}: nested more than {MAX_DEPTH} levels deep")
        open_nodes.add(key)
        stack.append((node, depth, True))
        stack.extend((child, depth + 1, False) for child in _children(node) if id(child) not in sizes)


def _objects(document: Any, source: str, number: int) -> Iterator[Object]:
    where = f'error validating "{source}" (document {number})'
    if not isinstance(document, dict):
        raise ManifestProblem(f"{where}: expected an object, got {type(document).__name__}")
    missing = [f"{field} not set" for field in ("apiVersion", "kind") if not document.get(field)]
    if missing:
        raise ManifestProblem(f"{where}: {', '.join(missing)}")
    if str(document["kind"]).endswith("List") and isinstance(document.get("items"), list):
        for item in document["items"]:
            yield from _objects(item, source, number)
        return
    metadata = document.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise ManifestProblem(f"{where}: metadata must be an object")
    yield document


def _sources(filenames: list[str], stdin: TextIO) -> Iterator[tuple[str, str]]:
    for filename in filenames:
        if filename == STDIN:
            yield "STDIN", stdin.read(MAX_SOURCE_BYTES + 1)
            continue
        path = Path(filename)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in _EXTENSIONS)
        elif path.exists():
            files = [path]
        else:
            raise ManifestProblem(f'the path "{filename}" does not exist')
        for file in files:
            try:
                with file.open("rb") as stream:
                    data = stream.read(MAX_SOURCE_BYTES + 1)
                yield str(file), data.decode("utf-8")
            except (OSError, UnicodeDecodeError) as e:
                raise ManifestProblem(f"cannot read {file}: {e}") from e
