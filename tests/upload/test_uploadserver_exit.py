"""`cdi-uploadserver` leaves without the interpreter's teardown once it has settled (`leave`): the exit code
is the server's, what was registered with `atexit` and logging's last lines still come out, and a
process with a non-daemon thread still running exits the usual way (teardown waits for the thread). A
finaliser run only by teardown (an object in `__main__`) tells the two exits apart."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PROGRAM = """
import atexit, logging, sys, threading, time
from pathlib import Path
from importer.uploadserver.main import leave

out = Path(sys.argv[1])
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")

class Finalised:
    def __del__(self) -> None:
        (out / "teardown").write_text("ran")

witness = Finalised()
atexit.register(lambda: (out / "atexit").write_text("ran"))
if sys.argv[2] == "thread":
    threading.Thread(target=time.sleep, args=(0.3,)).start()
logging.getLogger("uploadserver").info("exiting 3: Upload Complete")
leave(3)
sys.exit(3)
"""


def _run(tmp_path: Path, mode: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", PROGRAM, str(tmp_path), mode], capture_output=True, text=True,
                          timeout=60, check=False)


def test_a_settled_server_leaves_without_teardown_but_with_atexit_and_its_log(tmp_path: Path) -> None:
    done = _run(tmp_path, "alone")
    assert done.returncode == 3
    assert "exiting 3: Upload Complete" in done.stderr
    assert (tmp_path / "atexit").read_text() == "ran"
    assert not (tmp_path / "teardown").exists()


def test_a_thread_still_running_gets_the_usual_exit(tmp_path: Path) -> None:
    done = _run(tmp_path, "thread")
    assert done.returncode == 3
    assert (tmp_path / "atexit").read_text() == "ran"
    assert (tmp_path / "teardown").read_text() == "ran"
