"""`cdi` loads only the invoked command's module, so kubectl-like commands start fast, and help or an
unknown command still lists every command."""

from __future__ import annotations

import subprocess
import sys

import pytest

from cdi.cli.main import COMMANDS, _command_of, build_parser


@pytest.mark.parametrize(("argv", "command"), [
    (["get", "dv"], "get"),
    (["--home", "get", "wait", "dv/x"], "wait"),  # "get" is the value of --home here
    (["--request-timeout", "5s", "image-upload", "dv", "x"], "image-upload"),
    (["--help"], None),
    (["bogus", "get"], None),
])
def test_the_command_is_found_past_global_options(argv: list[str], command: str | None) -> None:
    assert _command_of(argv) == command


def test_a_kubectl_like_command_does_not_load_the_control_plane() -> None:
    probe = ("import sys; from cdi.cli.main import build_parser; build_parser(['get', 'dv']); "
             "print(sorted(m for m in ('cdi.cli.serve', 'cdi.cli.demo', 'cdi.embedded.pods.runner', "
             "'cdi.controllers.datavolume.controller') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_help_lists_every_command() -> None:
    text = build_parser().format_help()
    for command in COMMANDS:
        assert command in text
