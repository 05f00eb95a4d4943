"""Reading manifests for `cdi apply`, `cdi create` and `cdi delete -f`: files, directories and stdin.

Every source is parsed completely before anything is written, so a YAML syntax error (reported with
its file, line and column) leaves the cluster untouched. Multi-document YAML and JSON are accepted;
empty documents are skipped and `kind: List` documents contribute their items, as kubectl does.
Timestamps stay strings (as in JSON) rather than becoming Python datetimes. Checking a document
against the API is the caller's job (`cdi.cli.apply`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import yaml

from cdi.cli.errors import ManifestProblem
from cdi.cluster.protocol import Object

STDIN = "-"
_EXTENSIONS = (".yaml", ".yml", ".json")
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"


class _Loader(yaml.SafeLoader):
    """The safe loader without YAML 1.1 timestamps: "2024-05-01T12:00:00Z" stays a string."""


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
    """The objects in one YAML/JSON text; `ManifestProblem` for syntax errors and non-objects."""
    try:
        documents = list(yaml.load_all(text, Loader=_Loader))
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
            yield "STDIN", stdin.read()
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
                yield str(file), file.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as e:
                raise ManifestProblem(f"cannot read {file}: {e}") from e
