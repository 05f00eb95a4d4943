"""Option parsing shared by the kubectl-like subcommands: durations, booleans and the common flags.

`parse_duration` reads kubectl's (Go's) durations — "30s", "5m", "1h30m", "500ms" — and plain seconds;
`parse_bool` reads `--wait=false`-style values. Both raise `argparse.ArgumentTypeError`, so argparse
reports a bad value as a usage error. The subcommand modules (`get`, `apply`, `delete`, `wait`...) add
their namespace, file and cluster flags through `add_namespace`, `add_filenames` and `add_kubeconfig`.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from cdi import goduration

_PLAIN_SECONDS = re.compile(r"\d+(?:\.\d*)?|\.\d+")
_TRUE, _FALSE = ("true", "t", "1", "yes", "y"), ("false", "f", "0", "no", "n")

DEFAULT_NAMESPACE = "default"


def parse_duration(text: str) -> float:
    """Seconds in a kubectl duration: Go syntax ("1h2m3.5s", "250ms") or a plain number of seconds."""
    value = text.strip()
    if value.startswith("-"):
        raise argparse.ArgumentTypeError(f"invalid duration {text!r}: it must not be negative")
    if _PLAIN_SECONDS.fullmatch(value):
        return float(value)
    return _go_duration(value)


def _go_duration(value: str) -> float:
    if not value:
        raise argparse.ArgumentTypeError("invalid duration '': it must not be empty")
    try:
        return goduration.parse(value).total_seconds()
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid duration {value!r}: use a number of seconds or a duration such as 30s, 5m, 1h30m") from None


def parse_bool(text: str) -> bool:
    """A boolean flag value as kubectl accepts it ("true", "false", "1", "0"...)."""
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise argparse.ArgumentTypeError(f"invalid boolean {text!r}: use true or false")


def add_namespace(parser: argparse.ArgumentParser, *, all_namespaces: bool = False) -> None:
    """`-n/--namespace` (default "default") and, when asked, `-A/--all-namespaces`."""
    parser.add_argument("-n", "--namespace", default=None,
                        help=f"the namespace of namespaced objects (default: {DEFAULT_NAMESPACE})")
    if all_namespaces:
        parser.add_argument("-A", "--all-namespaces", action="store_true",
                            help="list objects across all namespaces")


def add_filenames(parser: argparse.ArgumentParser, *, required: bool) -> None:
    """`-f/--filename`, repeatable; "-" reads standard input."""
    parser.add_argument("-f", "--filename", dest="filenames", action="append", required=required, default=[],
                        metavar="FILE", help="a manifest file or directory, or - for standard input (repeatable)")


def namespace_of(args: argparse.Namespace) -> str:
    """The namespace the user asked for with -n, else "default"."""
    namespace: str | None = args.namespace
    return namespace or DEFAULT_NAMESPACE


def add_kubeconfig(parser: argparse.ArgumentParser) -> None:
    """`--kubeconfig FILE`: work on the cluster of that kubeconfig instead of the embedded store under
    `--home`. Only the flag switches backends: unlike kubectl, $KUBECONFIG and ~/.kube/config are not read,
    so a command never reaches a cluster by accident (`cdi.cli.state.connect_cluster`)."""
    parser.add_argument("--kubeconfig", type=Path, default=None, metavar="FILE",
                        help="work on the Kubernetes cluster of this kubeconfig (default: the embedded store "
                             "under --home; $KUBECONFIG is not read)")
