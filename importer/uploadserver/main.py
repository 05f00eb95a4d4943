"""`cdi-uploadserver`: serve until one upload has succeeded (or a background failure, or the deadline),
then write the termination message and exit, as upstream's `cmd/cdi-uploadserver`:

    success                      exit 0, {"preallocationApplied":<b>,"message":"Upload Complete"}
    DEADLINE passed, nothing     exit 0, {"deadlinePassed":true,"message":"Deadline Passed"} (the controller
    in flight                    replaces the pod, with fresh certificates)
    async processing failed      exit 1, "Unable to process data: ..." with its reason (the pod restarts
    after its 200                and the same upload can be tried again)
    bad configuration            exit 1

Failures answered to a client (sync uploads, and async ones before their 200) leave the server
running for a retry. Ours: `GET /metrics` on the same port serves the importer's progress page (bytes
received so far, and the size when the client declared it), labelled with OWNER_UID, which the
DataVolume controller scrapes for bytes, rate, ETA and stalls. `UploadServer` is the object graph,
startable in-process (tests, `cdi serve`; `importer.uploadserver.server`, also reachable from here);
`run` is what the console script calls.

Start-up: `main` binds the listening socket (`listen_early`) before it imports the HTTP stack and the
data path (about 0.3 s of a fresh interpreter's CPU, most of the program's start), and the server
takes it over. A client that connects meanwhile waits in the kernel's accept queue and is answered as
soon as the server runs, instead of being refused: the upload proxy retries a refused connection only
every 0.25 s, and the embedded pod runner reports the pod running (and ready: it runs no readiness
probes) as soon as the process starts. The HTTP stack is imported with OpenSSL's default CA locations
pointed at nothing (`no_default_cas`): aiohttp builds its two default *client* SSL contexts when
imported, each loading the system CA bundle (~0.03-0.06 s of CPU apiece, a fifth of aiohttp's import),
and the upload server is never a TLS client; its own context (`security.server_context`) loads only the
files it is configured with, after the locations are restored.

Exit: once the server has settled and its termination message is written, the program leaves without
the interpreter's teardown (`cdi.processexit.leave`: freeing aiohttp, the data path and every object one by one took
~0.1 s, between the final chunk's answer and the pod's end, which `cdi image-upload` waits for), as
`cdi`'s finished commands do; the standard streams, logging and `atexit` functions still run first.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import socket
import sys
from collections.abc import Iterator, Mapping, MutableMapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cdi.contracts import importer_env
from cdi.processexit import leave
from importer.errors import ConfigurationError
from importer.uploadserver.config import load_config

if TYPE_CHECKING:
    from importer.uploadserver.server import UploadServer as UploadServer
    from importer.uploadserver.server import serve as serve

log = logging.getLogger("uploadserver")
BACKLOG = 128
# Where OpenSSL looks for the default CA certificates (`set_default_verify_paths`), read at each call.
CA_LOCATION_VARIABLES = ("SSL_CERT_FILE", "SSL_CERT_DIR")


def __getattr__(name: str) -> Any:
    """`UploadServer` and `serve`, kept importable from here without importing them at start."""
    if name in ("UploadServer", "serve"):
        from importer.uploadserver import server

        return getattr(server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def listen_early(environ: Mapping[str, str]) -> socket.socket | None:
    """The configured address and port, bound and listening; None when the configuration is invalid, the
    address is a name rather than an IP literal, or binding fails (the server's own start, or `run`,
    then reports what is wrong)."""
    try:
        config = load_config(environ)
        address = ipaddress.ip_address(config.listen_address)
        family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
        return socket.create_server((config.listen_address, config.listen_port), family=family, backlog=BACKLOG)
    except (ConfigurationError, ValueError, OSError):
        return None


@contextlib.contextmanager
def no_default_cas(environ: MutableMapping[str, str] = os.environ) -> Iterator[None]:
    """Inside: an SSL context given the default CA locations trusts no certificate (OpenSSL finds nothing
    at them and carries on, as where a system has no bundle). After: the variables as they were, unset
    ones unset. For a single-threaded start only: the environment is the process's."""
    saved = {name: environ.get(name) for name in CA_LOCATION_VARIABLES}
    environ.update({name: os.devnull for name in CA_LOCATION_VARIABLES})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                environ.pop(name, None)
            else:
                environ[name] = value


async def run(environ: Mapping[str, str], listening: socket.socket | None = None) -> int:
    from cdi.contracts.termination import TerminationMessage
    from importer.main import write_termination
    from importer.uploadserver.server import serve

    termination_log = Path(environ.get(importer_env.TERMINATION_LOG, importer_env.DEFAULT_TERMINATION_LOG))
    try:
        config = load_config(environ)
        result = await serve(config, environ.get(importer_env.OWNER_UID, ""), listening)
    except ConfigurationError as e:
        log.error("%s", e.message)
        write_termination(termination_log, TerminationMessage(message=e.message, reason=e.reason, retryable=False))
        return 1
    except OSError as e:
        log.error("upload server failed: %s", e)
        return 1
    if result.message is not None:
        write_termination(config.termination_log, result.message)
    log.info("exiting %d: %s", result.exit_code, result.message.message if result.message else "")
    return result.exit_code


def main() -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    listening = listen_early(os.environ)
    with no_default_cas():
        import importer.uploadserver.server  # noqa: F401  (aiohttp's client contexts are made here)
    from importer.signals import run_main

    code = run_main(run(os.environ, listening))
    leave(code)
    sys.exit(code)


if __name__ == "__main__":
    main()
