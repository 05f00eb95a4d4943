"""The real `cdi` executable: exit codes, one-line errors without tracebacks, and sharing the store with
another process (here the test, standing in for `cdi serve`: it holds the controller lock of `home`)."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from cdi.cli.state import store_path
from cdi.embedded import EmbeddedCluster
from tests.cli.manifests import HTTP_DV, INVALID_DV, datavolume

CDI = str(Path(sys.executable).parent / "cdi")


def run_cdi(home: Path, *argv: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CDI_HOME": str(home)}
    return subprocess.run([CDI, *argv], input=stdin, capture_output=True, text=True, env=env, timeout=60,
                          check=False)


def assert_one_line_error(result: subprocess.CompletedProcess[str], message: str) -> None:
    assert result.returncode == 1
    assert result.stderr == f"error: {message}\n"
    assert "Traceback" not in result.stderr


def test_errors_are_one_line(home: Path) -> None:
    calls = [(("get", "widgets"), ""), (("apply", "-f", "-"), INVALID_DV),
             (("wait", "dv/x", "--for=condition=Ready", "--timeout=soon"), "")]
    with ThreadPoolExecutor(len(calls)) as pool:
        unknown, invalid, bad_flag = pool.map(lambda call: run_cdi(home, *call[0], stdin=call[1]), calls)
    assert_one_line_error(unknown, 'the server doesn\'t have a resource type "widgets"')
    assert invalid.returncode == 1 and "Traceback" not in invalid.stderr
    assert [line.split(":")[0] for line in invalid.stderr.splitlines()] == ["error", "error"]
    assert bad_flag.returncode == 2 and "invalid duration 'soon'" in bad_flag.stderr


def test_home_that_cannot_be_created(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    result = run_cdi(not_a_dir / "home", "apply", "-f", "-", stdin=HTTP_DV)
    assert result.returncode == 1 and result.stderr.startswith(f"error: cannot create the state directory {not_a_dir}")
    assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr


def test_locked_store(home: Path) -> None:
    holder = sqlite3.connect(store_path(home), isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        result = run_cdi(home, "--request-timeout=200ms", "apply", "-f", "-", stdin=HTTP_DV)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert_one_line_error(result, f"cannot open the embedded store {store_path(home)}: database is locked")


def test_apply_then_get_across_processes(home: Path) -> None:
    created = run_cdi(home, "apply", "-f", "-", stdin=HTTP_DV)
    assert (created.returncode, created.stdout) == (0, "datavolume.cdi.kubevirt.io/fedora created\n")
    listed = run_cdi(home, "get", "dv", "-o", "name")
    assert listed.stdout == "datavolume.cdi.kubevirt.io/fedora\n"


async def test_wait_in_another_process(home: Path) -> None:
    async with EmbeddedCluster(store_path(home)) as cluster:
        await cluster.create(datavolume("fedora"))
        waiter = await asyncio.create_subprocess_exec(
            CDI, "wait", "dv/fedora", "--for=jsonpath={.status.phase}=Succeeded", "--timeout=20s",
            env={**os.environ, "CDI_HOME": str(home)}, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        await asyncio.sleep(0.5)
        current = await cluster.get("cdi.kubevirt.io/v1beta1", "DataVolume", "fedora", "default")
        await cluster.update_status({**current, "status": {"phase": "Succeeded"}})
        out, err = await asyncio.wait_for(waiter.communicate(), 20)
    assert (waiter.returncode, out, err) == (0, b"datavolume.cdi.kubevirt.io/fedora condition met\n", b"")
