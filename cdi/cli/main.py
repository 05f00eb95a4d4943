"""`cdi` entrypoint: parses the command line and dispatches to a subcommand module. Errors are one
clear line on stderr and a non-zero exit, never a traceback.

Each subcommand module registers itself with `add_parser(commands)` and sets `run(args, home)`, which
returns the exit code. The kubectl-like ones (`apply`, `create`, `get`, `describe`, `delete`, `wait`,
`logs`) work on the embedded store under the home directory (`cdi.cli.state`); their failures arrive
here as `ApiError` (from the store) or `CliError` (from the CLI) and become `error: <message>`.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from cdi.cli import apply, delete, demo, describe, get, imageupload, logs, serve, wait
from cdi.cli.errors import CliError
from cdi.cli.flags import parse_duration
from cdi.cli.state import DEFAULT_BUSY_TIMEOUT
from cdi.cluster.errors import ApiError


def default_home() -> Path:
    """CDI_HOME, or a per-user directory, so independent instances can coexist."""
    if home := os.environ.get("CDI_HOME"):
        return Path(home)
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "cdi"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cdi", description="A Python Containerized Data Importer.")
    parser.add_argument("--home", type=Path, default=None, help="state directory (default: $CDI_HOME)")
    parser.add_argument("--request-timeout", type=parse_duration, default=DEFAULT_BUSY_TIMEOUT, metavar="DURATION",
                        help="how long a command waits for the store while `cdi serve` is writing (default: 10s)")
    commands = parser.add_subparsers(dest="command", required=True)
    serve.add_parser(commands)  # the embedded control plane
    # Working with objects, kubectl-style.
    for module in (apply, get, describe, delete, wait, logs, imageupload):
        module.add_parser(commands)
    demo.add_parser(commands)
    return parser


def _one_line(message: str) -> str:
    return " ".join(part.strip() for part in message.splitlines() if part.strip())


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    home: Path = args.home or default_home()
    try:
        code = args.run(args, home)
    except KeyboardInterrupt:
        code = 130
    except (CliError, ApiError) as e:
        print(f"error: {_one_line(e.message)}", file=sys.stderr)
        code = 1
    except demo.DemoError as e:
        print(f"error: {e}", file=sys.stderr)
        code = 1
    except BrokenPipeError:
        # The reader went away (`cdi get ... | head`): stop quietly, and keep Python from complaining at exit.
        sys.stdout = open(os.devnull, "w")
        code = 1
    except OSError as e:
        print(f"error: {_one_line(str(e))}", file=sys.stderr)
        code = 1
    sys.exit(code)
