"""`cdi create configmap NAME` and `cdi create secret generic NAME`: build a ConfigMap or Secret from
`--from-file=[KEY=]PATH` and `--from-literal=KEY=VALUE`, as kubectl does (the seeds' CA certificate
config maps and registry/endpoint secrets are made this way).

kubectl's rules, kept: a file's key is its base name unless `KEY=` is given; a directory contributes
each regular file directly inside it whose name is a valid key; keys are `[-._a-zA-Z0-9]+`; a key given
twice is an error. A ConfigMap holds UTF-8 content in `data` and anything else base64-encoded in
`binaryData`; a Secret holds everything base64-encoded in `data`, with `type` Opaque unless `--type`.

The builders are pure (they take the files' bytes through `read`); `cdi.cli.apply` registers the
subcommands (`add_parsers`) and writes the object (`build`).
"""

from __future__ import annotations

import argparse
import base64
import re
from collections.abc import Callable
from pathlib import Path

from cdi.cli.errors import CliError
from cdi.cluster.protocol import Object

_KEY = re.compile(r"[-._a-zA-Z0-9]+")
_MAX_KEY = 253
Reader = Callable[[Path], bytes]


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise CliError(f"cannot read {path}: {e.strerror or e}") from e


def valid_key(key: str) -> bool:
    return bool(_KEY.fullmatch(key)) and len(key) <= _MAX_KEY and key not in (".", "..")


def file_entries(source: str, read: Reader = _read) -> list[tuple[str, bytes]]:
    """The (key, content) pairs one `--from-file` value contributes."""
    key, sep, path_text = source.partition("=")
    if not sep:
        key, path_text = "", source
    elif not key or not path_text:
        raise CliError(f"key names or file paths cannot be empty: {source!r}")
    path = Path(path_text)
    if path.is_dir():
        if key:
            raise CliError(f"cannot give a key name for a directory path: {source!r}")
        return [(child.name, read(child)) for child in sorted(path.iterdir())
                if child.is_file() and valid_key(child.name)]
    if not path.exists():
        raise CliError(f"error reading {path_text}: no such file or directory")
    name = key or path.name
    if not valid_key(name):
        raise CliError(f"{name!r} is not a valid key name: use letters, digits, '-', '_' or '.'")
    return [(name, read(path))]


def literal_entry(source: str) -> tuple[str, str]:
    """`KEY=VALUE` (the value may itself contain '=')."""
    key, sep, value = source.partition("=")
    if not sep or not key:
        raise CliError(f"invalid literal source {source!r}, expected key=value")
    if not valid_key(key):
        raise CliError(f"{key!r} is not a valid key name: use letters, digits, '-', '_' or '.'")
    return key, value


def _entries(files: list[str], literals: list[str], read: Reader) -> list[tuple[str, bytes]]:
    entries = [entry for source in files for entry in file_entries(source, read)]
    entries += [(key, value.encode()) for key, value in (literal_entry(source) for source in literals)]
    return entries


def _unique(entries: list[tuple[str, bytes]], what: str) -> None:
    seen: set[str] = set()
    for key, _ in entries:
        if key in seen:
            raise CliError(f'cannot add key "{key}", another key by that name already exists in {what}')
        seen.add(key)


def _metadata(name: str, namespace: str) -> dict[str, object]:
    return {"name": name, "namespace": namespace}


def config_map(name: str, namespace: str, files: list[str], literals: list[str], read: Reader = _read) -> Object:
    """kubectl's `create configmap`: text in `data`, non-UTF-8 content base64 in `binaryData`."""
    entries = _entries(files, literals, read)
    _unique(entries, f'ConfigMap "{name}"')
    data: dict[str, str] = {}
    binary: dict[str, str] = {}
    for key, content in entries:
        try:
            data[key] = content.decode("utf-8")
        except UnicodeDecodeError:
            binary[key] = base64.b64encode(content).decode()
    obj: Object = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _metadata(name, namespace)}
    if data:
        obj["data"] = data
    if binary:
        obj["binaryData"] = binary
    return obj


def secret(name: str, namespace: str, files: list[str], literals: list[str], secret_type: str = "Opaque",
           read: Reader = _read) -> Object:
    """kubectl's `create secret generic`: every value base64 in `data`."""
    entries = _entries(files, literals, read)
    _unique(entries, f'Secret "{name}"')
    obj: Object = {"apiVersion": "v1", "kind": "Secret", "metadata": _metadata(name, namespace),
                   "type": secret_type or "Opaque"}
    if entries:
        obj["data"] = {key: base64.b64encode(content).decode() for key, content in entries}
    return obj


def add_parsers(create: argparse.ArgumentParser) -> None:
    """`configmap` (`cm`) and `secret generic` under `cdi create`."""
    kinds = create.add_subparsers(dest="create_kind", metavar="KIND")
    configmap = kinds.add_parser("configmap", aliases=["cm"], help="create a ConfigMap from files or literals")
    _add_sources(configmap)
    secrets = kinds.add_parser("secret", help="create a Secret (generic)").add_subparsers(
        dest="secret_kind", metavar="TYPE", required=True)
    generic = secrets.add_parser("generic", help="create a Secret from files or literals")
    _add_sources(generic)
    generic.add_argument("--type", dest="secret_type", default="Opaque", help="the Secret's type (default Opaque)")


def _add_sources(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("object_name", metavar="NAME")
    parser.add_argument("--from-file", dest="from_files", action="append", default=[], metavar="[KEY=]PATH",
                        help="a file (key: its name, or KEY) or a directory of files (repeatable)")
    parser.add_argument("--from-literal", dest="from_literals", action="append", default=[], metavar="KEY=VALUE",
                        help="a key and its literal value (repeatable)")
    # Also accepted after the subcommand; SUPPRESS keeps a -n given before it.
    parser.add_argument("-n", "--namespace", default=argparse.SUPPRESS, help="the namespace (default: default)")
    parser.add_argument("--kubeconfig", type=Path, default=argparse.SUPPRESS, metavar="FILE",
                        help="create it on the cluster of this kubeconfig (default: the embedded store)")


def build(args: argparse.Namespace, namespace: str) -> Object:
    """The object `cdi create configmap|secret generic` asked for."""
    if args.create_kind == "secret":
        return secret(args.object_name, namespace, args.from_files, args.from_literals, args.secret_type)
    return config_map(args.object_name, namespace, args.from_files, args.from_literals)
