"""`cdi` loads only the invoked command's module, so kubectl-like commands start fast, and help or an
unknown command still lists every command. Run as the program, a command that is done leaves without
the interpreter's teardown, with all its output and its exit code, unless a thread still runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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


def _program(probe: str, home: Path) -> subprocess.CompletedProcess[str]:
    """`probe` then `cdi.cli.main.main()` as the `cdi` program runs it (argv from sys.argv), with an object
    whose finaliser reports whether the interpreter's teardown ran (it clears `__main__`'s globals), and an
    atexit hook, which runs either way."""
    script = ("import atexit, os, sys, threading\n"
              "class Finalised:\n"
              "    def __del__(self): os.write(2, b'teardown ran\\n')\n"
              "finalised = Finalised()\n"
              "atexit.register(lambda: os.write(2, b'atexit ran\\n'))\n"
              f"{probe}\n"
              "from cdi.cli.main import main\n"
              "main()\n")
    return subprocess.run([sys.executable, "-c", script, *ARGV], capture_output=True, text=True, check=False,
                          env={**os.environ, "CDI_HOME": str(home)})


ARGV = ["apply", "-f", "-"]


def test_a_finished_command_run_as_the_program_skips_the_teardown_and_keeps_its_output(tmp_path: Path) -> None:
    manifests = "\n---\n".join(MANIFEST.format(i=i) for i in range(40))
    result = _program(f"sys.stdin = __import__('io').StringIO({manifests!r})", tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"configmap/config-{i} created" for i in range(40)]
    assert "teardown ran" not in result.stderr
    assert "atexit ran" in result.stderr


def test_a_command_that_fails_keeps_its_exit_code_and_message(tmp_path: Path) -> None:
    result = _program("sys.stdin = __import__('io').StringIO('kind: [')", tmp_path)
    assert result.returncode == 1
    assert result.stderr.startswith("error: ")
    assert "teardown ran" not in result.stderr


def test_a_thread_still_running_gets_the_usual_exit(tmp_path: Path) -> None:
    """Leaving without teardown would cut a non-daemon thread short: then the usual exit waits for it (this
    one runs until the main thread has finished, so it is alive whenever `main` ends)."""
    probe = ("sys.stdin = __import__('io').StringIO('')\n"
             "threading.Thread(target=lambda: (threading.main_thread().join(), print('thread done'))).start()")
    result = _program(probe, tmp_path)
    assert "thread done" in result.stdout
    assert "teardown ran" in result.stderr


MANIFEST = """apiVersion: v1
kind: ConfigMap
metadata:
  name: config-{i}
  namespace: default
data:
  key: value
"""
