"""How `cdi get` and friends print: aligned tables, YAML/JSON documents, `-o jsonpath=TEMPLATE`
(`cdi.cli.jsonpath_template`) and kubectl's object names.

Pure string builders; the subcommands write what these return. Tables are laid out as kubectl's
tabwriter does (three spaces between columns, a minimum column width of six, the last column unpadded)
and can carry their widths over to later rows, so `cdi get -w` stays aligned as rows arrive.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any

import yaml

from cdi.cli.jsonpath import JsonPathError
from cdi.cli.jsonpath_template import Template, compile_template
from cdi.cluster.kinds import ResourceKind
from cdi.cluster.protocol import Object

_PADDING = 3
_MIN_WIDTH = 6
OUTPUT_FORMATS = ("wide", "yaml", "json", "name")
JSONPATH = "jsonpath="
DOCUMENT_FORMATS = ("yaml", "json")


def parse_output(text: str) -> str:
    """`-o`'s value: one of `OUTPUT_FORMATS` or `jsonpath=TEMPLATE` (checked here, so a bad template is a
    usage error); `argparse.ArgumentTypeError` otherwise."""
    if text in OUTPUT_FORMATS:
        return text
    if text.startswith(JSONPATH):
        try:
            compile_template(text[len(JSONPATH):])
        except JsonPathError as e:
            raise argparse.ArgumentTypeError(e.message) from e
        return text
    raise argparse.ArgumentTypeError(
        f"unable to match a printer suitable for the output format {text!r}, allowed formats are: "
        f"{','.join(OUTPUT_FORMATS)},jsonpath=TEMPLATE")


def output_template(output: str | None) -> Template | None:
    """The template of a `jsonpath=` output, else None."""
    return compile_template(output[len(JSONPATH):]) if output and output.startswith(JSONPATH) else None


def is_document_output(output: str | None) -> bool:
    """Formats that print whole documents (yaml, json, jsonpath) rather than rows or names."""
    return output in DOCUMENT_FORMATS or output_template(output) is not None


def column_widths(rows: Sequence[Sequence[str]], at_least: Sequence[int] = ()) -> list[int]:
    """Each padded column's width: the widest cell plus padding, never below six (or `at_least`)."""
    count = max((len(row) for row in rows), default=0)
    widths = [max([len(row[i]) + _PADDING for row in rows if i < len(row)] + [_MIN_WIDTH]) for i in range(count)]
    return [max(width, at_least[i]) if i < len(at_least) else width for i, width in enumerate(widths)]


def format_row(row: Sequence[str], widths: Sequence[int]) -> str:
    if not row:
        return ""
    line = "".join(cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=False)) + row[-1]
    return line.rstrip()  # no padding after the last non-empty cell


def format_table(rows: Sequence[Sequence[str]], at_least: Sequence[int] = ()) -> tuple[list[str], list[int]]:
    """The table's lines and the widths used (pass them back as `at_least` to align later rows)."""
    widths = column_widths(rows, at_least)
    return [format_row(row, widths) for row in rows], widths


def kind_label(kind: ResourceKind) -> str:
    """The kind as kubectl names it in output: "datavolume.cdi.kubevirt.io", "persistentvolumeclaim"."""
    return f"{kind.singular}.{kind.group}" if kind.group else kind.singular


def object_name(kind: ResourceKind, name: str) -> str:
    """`-o name` and apply's style: "datavolume.cdi.kubevirt.io/NAME"."""
    return f"{kind_label(kind)}/{name}"


def as_list(objects: Sequence[Object]) -> Object:
    """Several objects as kubectl prints them: a v1 List."""
    return {"apiVersion": "v1", "items": list(objects), "kind": "List", "metadata": {"resourceVersion": ""}}


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (scripts, the last-applied annotation) as `|` blocks, as kubectl prints them."""


def _string(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value and not any(line != line.rstrip() for line in value.splitlines()) else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _string)


def to_yaml(document: Any) -> str:
    return yaml.dump(document, Dumper=_Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True)


def to_json(document: Any) -> str:
    return json.dumps(document, indent=4, ensure_ascii=False) + "\n"


def render_documents(objects: Sequence[Object], output: str, *, single: bool) -> str:
    """`-o yaml` / `-o json` / `-o jsonpath=...`: the object itself when one was asked for by name, else a
    List (kubectl's jsonpath then walks the List, hence `{.items[*]...}`)."""
    document = objects[0] if single and len(objects) == 1 else as_list(objects)
    if (template := output_template(output)) is not None:
        return template.render(document)
    return to_yaml(document) if output == "yaml" else to_json(document)
