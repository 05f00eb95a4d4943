"""`cdi` entrypoint: parses the command line and dispatches to a subcommand module. Errors are one
clear line on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from cdi.cli import demo


def default_home() -> Path:
    """CDI_HOME, or a per-user directory, so independent instances can coexist."""
    if home := os.environ.get("CDI_HOME"):
        return Path(home)
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "cdi"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cdi", description="A Python Containerized Data Importer.")
    parser.add_argument("--home", type=Path, default=None, help="state directory (default: $CDI_HOME)")
    commands = parser.add_subparsers(dest="command", required=True)
    demo.add_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    home: Path = args.home or default_home()
    try:
        code = args.run(args, home)
    except KeyboardInterrupt:
        code = 130
    except demo.DemoError as e:
        print(f"error: {e}", file=sys.stderr)
        code = 1
    sys.exit(code)
