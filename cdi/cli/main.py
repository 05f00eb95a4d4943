"""`cdi` entrypoint: parses the command line and dispatches to a subcommand module. Errors are one
clear line on stderr and a non-zero exit, never a traceback.

Each subcommand module registers itself with `add_parser(commands)` and sets `run(args, home)`, which
returns the exit code. Only the module of the command being run is imported (`COMMANDS`): loading
the control plane for `cdi get` would cost most of a second per command; help and unknown commands
load them all. The kubectl-like ones (`apply`, `create`, `get`, `describe`, `delete`, `wait`,
`logs`) work on the embedded store under the home directory, or with `--kubeconfig FILE` on that
cluster's API server (`cdi.cli.state.connect_cluster`; only the flag switches, $KUBECONFIG is not
read); their failures arrive here as `ApiError` (from the store or the API server: a request RBAC
refuses is a `Forbidden` like any other) or `CliError` (from the CLI) and become `error: <message>`.
Command-line mistakes are one line too (`UsageParser`): `error: <problem>; see 'cdi get --help'`, exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from cdi.cli.errors import CliError
from cdi.cli.flags import parse_duration
from cdi.cli.state import DEFAULT_BUSY_TIMEOUT
from cdi.cluster.errors import ApiError
from cdi.processexit import leave


def default_home() -> Path:
    """CDI_HOME, or a per-user directory, so independent instances can coexist."""
    if home := os.environ.get("CDI_HOME"):
        return Path(home)
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "cdi"


# Command → the module that registers it, in help order: the embedded control plane, then working
# with objects kubectl-style, then the demo.
COMMANDS: dict[str, str] = {
    "serve": "cdi.cli.serve", "controller": "cdi.cli.controller", "node": "cdi.cli.node",
    "operator": "cdi.cli.operator",
    "apiserver": "cdi.cli.apiserver", "uploadproxy": "cdi.cli.uploadproxycmd",
    "apply": "cdi.cli.apply", "create": "cdi.cli.apply", "get": "cdi.cli.get",
    "describe": "cdi.cli.describe", "delete": "cdi.cli.delete", "wait": "cdi.cli.wait", "logs": "cdi.cli.logs",
    "image-upload": "cdi.cli.imageupload", "demo": "cdi.cli.demo",
    "manifests": "cdi.cli.installmanifests",
}
GLOBAL_OPTIONS_WITH_VALUE = ("--home", "--request-timeout")
# Commands that are done when `run` returns. Run as the program, they leave without the interpreter's
# teardown (freeing every module and object one by one: ~0.3 s once the API models are loaded, a fifth
# of a `cdi get`), once their output is flushed and no other thread runs (`cdi.processexit.leave`).
FINISHED_ON_RETURN = frozenset({"apply", "create", "get", "describe", "delete", "wait", "logs", "image-upload"})


def _command_of(argv: Sequence[str]) -> str | None:
    """The subcommand named on the command line, if it is a known one (global options skipped)."""
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in GLOBAL_OPTIONS_WITH_VALUE:
            skip = True
        elif not arg.startswith("-"):
            return arg if arg in COMMANDS else None
    return None


class UsageParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line, kubectl-style, instead of the usage dump plus the error,
    and, as kubectl, flags may come between the positional arguments (`cdi get dv -n vms fedora`): a
    parser without subcommands parses intermixed."""

    _intermixing = False

    def parse_known_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                         namespace: argparse.Namespace | None = None) -> tuple[argparse.Namespace, list[str]]:
        if self._intermixing or self._subparsers is not None:
            return super().parse_known_args(args, namespace)
        self._intermixing = True
        try:
            return super().parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixing = False

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {_one_line(message)}; see '{self.prog} --help'\n")


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser with the subcommand in `argv` registered, or every subcommand (no `argv`, help, or a
    command that is not known, so argparse can list them)."""
    parser = UsageParser(prog="cdi", description="A Python Containerized Data Importer.")
    parser.add_argument("--home", type=Path, default=None, help="state directory (default: $CDI_HOME)")
    parser.add_argument("--request-timeout", type=parse_duration, default=DEFAULT_BUSY_TIMEOUT, metavar="DURATION",
                        help="how long a command waits for the store while `cdi serve` is writing (default: 10s)")
    commands = parser.add_subparsers(dest="command", required=True)
    command = _command_of(argv) if argv is not None else None
    modules = [COMMANDS[command]] if command else list(dict.fromkeys(COMMANDS.values()))
    for name in modules:
        importlib.import_module(name).add_parser(commands)
    return parser


def _one_line(message: str) -> str:
    return " ".join(part.strip() for part in message.splitlines() if part.strip())


def main(argv: list[str] | None = None) -> None:
    """The `cdi` program. Called with `argv` (tests, embedding) it always ends in `SystemExit`; as the
    program (`argv` None) a command in `FINISHED_ON_RETURN` exits without the interpreter's teardown."""
    as_program = argv is None
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv).parse_args(argv)
    home: Path = args.home or default_home()
    try:
        code = args.run(args, home)
    except KeyboardInterrupt:
        code = 130
    except (CliError, ApiError) as e:
        print(f"error: {_one_line(e.message)}", file=sys.stderr)
        code = 1
    except BrokenPipeError:
        # The reader went away (`cdi get ... | head`): stop quietly, and keep Python from complaining at exit.
        sys.stdout = open(os.devnull, "w")
        code = 1
    except OSError as e:
        print(f"error: {_one_line(str(e))}", file=sys.stderr)
        code = 1
    if as_program and args.command in FINISHED_ON_RETURN:
        leave(code)
    sys.exit(code)
