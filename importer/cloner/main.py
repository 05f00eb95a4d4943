"""`cdi-cloner`: the clone source pod's entrypoint. Reads the environment, serves
`kubevirt_cdi_clone_progress_total{ownerUID=...}` on the importer's metrics endpoint (CDI_METRICS_ADDR,
default :8443) and, ours, the byte counters beside it (`pycdi_transfer_bytes_done`: bytes of the
source's data extents sent so far, those an earlier attempt had acknowledged included, zero runs found in
them counted as passed; `pycdi_transfer_bytes_total`: those extents in all as SEEK_DATA finds them, or the
whole volume, an upper bound, when extents are not detected), sends the source, writes the termination
message and exits with the importer's codes: 0 and "Clone Complete" on success; 1 with the failure's
message, reason and retryable flag otherwise (the pod's restart is the retry, and it resumes where the
server stopped acknowledging).
`run` builds the real object graph; `clone` takes its collaborators as arguments (tests, the benchmark).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
import sys
from collections.abc import Mapping
from pathlib import Path

from cdi.contracts import clone_protocol as cp
from cdi.contracts import importer_env
from cdi.contracts.metrics import CLONE_PROGRESS, CLONE_PROGRESS_HELP, progress_line, transfer_lines
from cdi.contracts.termination import TerminationMessage
from importer.blockio import device_size, is_block_device
from importer.cloner.client import CloneClient, client_context
from importer.cloner.config import ClonerConfig, load_config
from importer.cloner.sender import CloneReport, Sender
from importer.errors import ConfigurationError, ImportFailure, NoSpace
from importer.main import failure_message, write_termination
from importer.metrics import MetricsServer
from importer.progress import Progress
from importer.signals import run_main

log = logging.getLogger("cloner")


class CloneMetricsServer(MetricsServer):
    """The importer's endpoint, serving the clone's percentage instead of the import's, and the same byte
    counters (the DataVolume controller reads them for bytes, rate, ETA and stalls)."""

    def __init__(self, progress: Progress, owner_uid: str, addr: str) -> None:
        super().__init__(progress, owner_uid, addr)
        self._clone_progress = progress
        self._clone_owner = owner_uid

    def body(self) -> bytes:
        progress = self._clone_progress
        lines = [f"# HELP {CLONE_PROGRESS} {CLONE_PROGRESS_HELP}", f"# TYPE {CLONE_PROGRESS} counter",
                 progress_line(CLONE_PROGRESS, self._clone_owner, progress.percent),
                 *transfer_lines(self._clone_owner, progress.done, progress.total)]
        return ("\n".join(lines) + "\n").encode()


def _source_size(path: Path) -> int:
    if is_block_device(path):
        return device_size(path)
    if not path.is_file():
        raise ConfigurationError(f"the clone source has no disk image at {path}: only volumes holding a disk "
                                 f"image (content type kubevirt) can be cloned host-assisted")
    return path.stat().st_size


async def clone(config: ClonerConfig, progress: Progress, context: ssl.SSLContext | None) -> CloneReport:
    size = await asyncio.to_thread(_source_size, config.source)
    fd = os.open(config.source, os.O_RDONLY)
    try:
        async with CloneClient(config.base_url, context, config.server_name) as client:
            sender = await asyncio.to_thread(Sender, client, fd, size, config.volume_mode, progress,
                                             detect=config.detect)
            return await sender.run()
    finally:
        os.close(fd)


def _context(config: ClonerConfig) -> ssl.SSLContext | None:
    if not config.base_url.startswith("https:"):
        return None
    try:
        return client_context(config.client_cert, config.client_key, config.server_ca)
    except (ssl.SSLError, ValueError, OSError) as e:
        raise ConfigurationError(f"invalid clone TLS credentials: {e}") from e


async def run(environ: Mapping[str, str]) -> int:
    termination_log = Path(environ.get(importer_env.TERMINATION_LOG, importer_env.DEFAULT_TERMINATION_LOG))
    try:
        config = load_config(environ)
        context = _context(config)
    except ConfigurationError as e:
        log.error("%s", e.message)
        write_termination(termination_log, failure_message(e))
        return 1
    progress = Progress()
    metrics = CloneMetricsServer(progress, config.owner_uid, config.metrics_addr)
    serving = await metrics.start_beside()
    try:
        report = await clone(config, progress, context)
    except ImportFailure as e:
        log.error("%s", e.message)
        write_termination(config.termination_log, failure_message(e))
        return 1
    except OSError as e:
        failure = NoSpace(str(e)) if e.errno in (28, 122) else ImportFailure(f"{type(e).__name__}: {e}")
        log.error("%s", failure.message)
        write_termination(config.termination_log, failure_message(failure))
        return 1
    finally:
        with contextlib.suppress(Exception):
            await serving
        await metrics.stop()
    log.info("%s: %d bytes, %d data bytes acknowledged, %d sent, %d attempt(s)", cp.CLONE_COMPLETE,
             report.virtual_size, report.data_bytes, report.wire_bytes, report.attempts)
    write_termination(config.termination_log, TerminationMessage(message=cp.CLONE_COMPLETE))
    return 0


def main() -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sys.exit(run_main(run(os.environ)))


if __name__ == "__main__":
    main()
