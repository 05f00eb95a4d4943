"""Where the CLI keeps its state under the home directory (`--home`/`CDI_HOME`), and how it opens it.

The layout is a contract with `cdi serve` and its pod runner, which share the same directory:

    <home>/store.db                                         the embedded object store (SQLite)
    <home>/pods/<namespace>/<pod>/<container>.log           a container's current log
    <home>/pods/<namespace>/<pod>/<container>.previous.log  the log of its previous run

Every subcommand that talks to the cluster opens it with `open_cluster`; `cdi logs` reads the files
`pod_log_path` names, which the pod runner (`cdi.embedded.pods`) writes with the same layout.
"""

from __future__ import annotations

from pathlib import Path

from cdi.cli.errors import CliError
from cdi.embedded import EmbeddedCluster
from cdi.embedded.pods.paths import log_path

STORE_FILE = "store.db"
# A command waits this long for the store's write lock (held briefly by `cdi serve` on each write)
# before reporting the store as locked.
DEFAULT_BUSY_TIMEOUT = 10.0


def store_path(home: Path) -> Path:
    """The embedded store's database file."""
    return home / STORE_FILE


def open_cluster(home: Path, *, busy_timeout: float = DEFAULT_BUSY_TIMEOUT) -> EmbeddedCluster:
    """The embedded cluster kept under `home`, creating the directory (and an empty store) if needed.

    Raises `CliError` when the directory cannot be made, and the store's `StoreUnavailable` when the
    file is not a usable database or stays locked past `busy_timeout` seconds.
    """
    try:
        home.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CliError(f"cannot create the state directory {home}: {e.strerror or e}") from e
    if not home.is_dir():
        raise CliError(f"the state directory {home} is not a directory")
    return EmbeddedCluster(store_path(home), busy_timeout=busy_timeout)


def pod_log_path(home: Path, namespace: str, name: str, container: str, previous: bool = False) -> Path:
    """The log file of one container of a pod: its current run, or with `previous` the run before.

    The pod runner owns the layout (`cdi.embedded.pods.paths`); its state directory is the home.
    """
    return log_path(home, namespace, name, container, previous)
