"""One upload at a time, as upstream's `validateShouldHandleRequest`: while an upload (or its background
processing) runs, further uploads get 503; once one has succeeded, every later one gets 409. A
failure returns the server to idle so the same pod accepts a retry.

The gate also carries the server's final result: `finish` records it and wakes `main`, which then
stops serving, writes the termination message and exits. Used by `handlers` and `resumable`.
"""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass

from cdi.contracts.termination import TerminationMessage


class GateState(enum.Enum):
    IDLE = "idle"
    BUSY = "busy"
    DONE = "done"


class GateClosed(Exception):
    """The gate refused: `status` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class ServerResult:
    exit_code: int
    message: TerminationMessage | None


class UploadGate:
    def __init__(self) -> None:
        self.state = GateState.IDLE
        self.holder = ""
        self._result: asyncio.Future[ServerResult] = asyncio.get_running_loop().create_future()
        self._not_busy = asyncio.Event()
        self._not_busy.set()

    def acquire(self, holder: str) -> None:
        """Take the gate for one upload (`holder` names it in logs), or raise `GateClosed`."""
        if self.state is GateState.BUSY:
            raise GateClosed(503, f"an upload ({self.holder}) is already in progress")
        if self.state is GateState.DONE:
            raise GateClosed(409, "the upload has already completed")
        self.state = GateState.BUSY
        self.holder = holder
        self._not_busy.clear()

    def release(self) -> None:
        """The upload failed in a way a retry can fix: accept a new one."""
        if self.state is GateState.BUSY:
            self.state = GateState.IDLE
            self.holder = ""
            self._not_busy.set()

    @property
    def in_flight(self) -> bool:
        return self.state is GateState.BUSY

    async def settled(self) -> None:
        """Wait until no upload is in flight."""
        while self.state is GateState.BUSY:
            await self._not_busy.wait()

    def finish(self, result: ServerResult) -> None:
        """The server is done (success, a fatal background failure, or the deadline)."""
        self.state = GateState.DONE
        self._not_busy.set()
        if not self._result.done():
            self._result.set_result(result)

    async def result(self) -> ServerResult:
        return await asyncio.shield(self._result)

    @property
    def finished(self) -> bool:
        return self._result.done()
