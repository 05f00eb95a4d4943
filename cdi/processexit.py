"""Leaving a finished program without the interpreter's teardown.

A short-lived program (a `cdi` command, `cdi-uploadserver` once it has settled) spends 0.1-0.3 s after
its work in the interpreter's teardown, which its caller waits for. `leave` skips it when nothing is
lost by that. It sits at the bottom so that the CLI and the data plane share it.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading


def leave(code: int) -> None:
    """Exit now with `code`, skipping the interpreter's teardown, if nothing is lost by it: the standard
    streams flush, the functions registered with `atexit` run (logging's shutdown among them), logging's
    handlers flush and close, and no thread other than this one and daemon ones (which teardown would not
    wait for either) is still running. Otherwise return, and the caller exits as usual."""
    if any(t is not threading.current_thread() and not t.daemon and t.is_alive() for t in threading.enumerate()):
        return
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:
        return  # let the usual exit report or ignore it as it would have
    atexit._run_exitfuncs()
    logging.shutdown()
    os._exit(code)
