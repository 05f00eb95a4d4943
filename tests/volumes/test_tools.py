"""The control plane's tool runner: exit status, output, missing programs and timeouts."""

from __future__ import annotations

import pytest

from cdi.toolrun import ToolFailed, ToolMissing, ToolTimeout, run_tool


async def test_output_and_status() -> None:
    done = await run_tool(["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert (done.returncode, done.stdout, done.stderr) == (3, "out\n", "err\n")
    assert done.argv == ("sh", "-c", "echo out; echo err >&2; exit 3")


async def test_check_raises_with_the_tool_s_own_words() -> None:
    done = await run_tool(["sh", "-c", "echo 'mount: bad superblock' >&2; exit 32"])
    with pytest.raises(ToolFailed, match="exited with status 32: mount: bad superblock") as raised:
        done.check()
    assert raised.value.returncode == 32
    assert (await run_tool(["true"])).check().returncode == 0


async def test_a_missing_program() -> None:
    with pytest.raises(ToolMissing, match="no-such-tool-xyz is not installed"):
        await run_tool(["no-such-tool-xyz"])


async def test_a_hung_program_is_killed() -> None:
    with pytest.raises(ToolTimeout, match=r"sleep did not finish within 0\.2 s"):
        await run_tool(["sleep", "30"], timeout=0.2)
