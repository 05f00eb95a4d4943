"""Fixtures for the CLI tests: a CDI home per test, `cdi` run in-process, and the store it uses.

`cdi(...)` runs `cdi.cli.main.main` with CDI_HOME pointing at the test's home and returns the exit code
with what it printed; `cdi_in_thread(...)` does the same from an async test (main runs its own event
loop, so it goes to a worker thread while the test changes the store). `cluster` opens the same
`<home>/store.db` the commands use, as `cdi serve` would.

Every test's home starts as a running `cdi serve` leaves it (`serve_lock`): an empty store, and the
controller lock held, so commands do not warn that no control plane is running; a test about that
warning releases the lock (or removes the store).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cdi.cli.main import main
from cdi.cli.state import LOCK_FILE, store_path
from cdi.cluster.protocol import Object
from cdi.embedded import EmbeddedCluster
from cdi.runtime.lock import ProcessLock


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str

    @property
    def error_lines(self) -> list[str]:
        return self.err.splitlines()


Run = Callable[..., Result]
RunAsync = Callable[..., Coroutine[Any, Any, Result]]


def _exit_code(argv: tuple[str, ...]) -> int:
    try:
        main(list(argv))
    except SystemExit as e:
        return int(e.code or 0)
    raise AssertionError("main() returned without exiting")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "home"
    monkeypatch.setenv("CDI_HOME", str(path))
    return path


@pytest.fixture(autouse=True)
def serve_lock(home: Path) -> Iterator[ProcessLock]:
    """The controller lock of the test's home, held as `cdi serve` holds it (release it to have none)."""
    lock = ProcessLock(home / LOCK_FILE)
    assert lock.try_acquire()
    seed(home)
    yield lock
    lock.release()


@pytest.fixture
def cdi(home: Path, capsys: pytest.CaptureFixture[str]) -> Run:
    def run(*argv: str) -> Result:
        capsys.readouterr()
        code = _exit_code(argv)
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


@pytest.fixture
def cdi_in_thread(home: Path, capsys: pytest.CaptureFixture[str]) -> RunAsync:
    async def run(*argv: str) -> Result:
        capsys.readouterr()
        code = await asyncio.to_thread(_exit_code, argv)
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


@pytest.fixture
async def cluster(home: Path) -> AsyncIterator[EmbeddedCluster]:
    home.mkdir(parents=True, exist_ok=True)
    async with EmbeddedCluster(store_path(home), poll_interval=0.02) as opened:
        yield opened


def seed(home: Path, *objects: Object, clock: Callable[[], datetime] | None = None) -> list[Object]:
    """Create objects in the home's store from a synchronous test, optionally at another time."""
    async def create() -> list[Object]:
        home.mkdir(parents=True, exist_ok=True)
        async with EmbeddedCluster(store_path(home), clock=clock or (lambda: datetime.now(UTC))) as opened:
            return [await opened.create(obj) for obj in objects]

    return asyncio.run(create())


@pytest.fixture
def write_file(tmp_path: Path) -> Callable[[str, str], str]:
    def write(name: str, text: str) -> str:
        path = tmp_path / name
        path.write_text(text)
        return str(path)

    return write
