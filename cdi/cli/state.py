"""Where the CLI keeps its state under the home directory (`--home`/`CDI_HOME`), and how it opens it.

The layout is a contract with `cdi serve` and its pod runner, which share the same directory:

    <home>/store.db                                         the embedded object store (SQLite)
    <home>/controller.lock                                  flock-ed by the active `cdi serve`
    <home>/token-signing-keys.json                          `cdi serve`'s copy of the upload token key ring
    <home>/clone-signing-key.pem                            the clone token signing key (made on first use)
    <home>/pods/<namespace>/<pod>/<container>.log           a container's current log
    <home>/pods/<namespace>/<pod>/<container>.previous.log  the log of its previous run

Every subcommand that talks to the cluster opens it with `open_cluster`; `cdi logs` reads the files
`pod_log_path` names, which the pod runner (`cdi.embedded.pods`) writes with the same layout. The store
answers an UploadTokenRequest with a token signed by the key ring `cdi serve` copies to
`token_keys_path` (`cdi.embedded.uploadtokens`), and adds a clone token, signed with the key at
`clone_key_path` (`cdi.embedded.clonetokens`), to a DataVolume created to clone from another namespace.

`open_cluster` creates the store only for commands that write (`create=True`); a read of a directory
that has none says so (`NoStore`) rather than leaving an empty database behind. It also warns, on one
stderr line, when no `cdi serve` holds the controller lock (`cdi.runtime.lock.ProcessLock`): objects
written then are stored, but nothing reconciles them until a control plane starts.

`connect_cluster` is the choice for commands that also work on a real API server (`apply`, `create`,
`get`, `describe`, `delete`, `wait`, `logs`, `image-upload`, each with `--kubeconfig FILE`): the
Kubernetes backend for the kubeconfig when one is given, else `open_cluster`. Only an explicit
kubeconfig switches backends ($KUBECONFIG is not consulted), so a command meant for the embedded store
never lands on a cluster. A kubeconfig that cannot be loaded is a `CliError` naming the file.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

from cdi.admission import Mutate
from cdi.cli.errors import CliError
from cdi.cluster.protocol import Cluster
from cdi.embedded import EmbeddedCluster
from cdi.embedded.clonetokens import SigningKeyFile, clone_token_mutation
from cdi.embedded.pods.paths import log_path
from cdi.embedded.reviews import Review
from cdi.embedded.uploadtokens import KeyRingFile, upload_token_reviews

STORE_FILE = "store.db"
LOCK_FILE = "controller.lock"
TOKEN_KEYS_FILE = "token-signing-keys.json"
CLONE_KEY_FILE = "clone-signing-key.pem"
# A command waits this long for the store's write lock (held briefly by `cdi serve` on each write)
# before reporting the store as locked.
DEFAULT_BUSY_TIMEOUT = 10.0


def store_path(home: Path) -> Path:
    """The embedded store's database file."""
    return home / STORE_FILE


def token_keys_path(home: Path) -> Path:
    """Where `cdi serve` keeps its copy of the upload token key ring (`cdi.cli.tokenkeys`)."""
    return home / TOKEN_KEYS_FILE


def clone_key_path(home: Path) -> Path:
    """The clone token signing key of the embedded control plane (`cdi.embedded.clonetokens`)."""
    return home / CLONE_KEY_FILE


def store_reviews(home: Path) -> Mapping[tuple[str, str], Review]:
    """The create-only answers of the store under `home`: the defaults, and upload tokens signed with the ring
    `cdi serve` keeps there."""
    return upload_token_reviews(KeyRingFile(token_keys_path(home)).read)


def store_mutation(home: Path) -> Mutate:
    """The mutating admission of the store under `home`: clone tokens signed with its clone key."""
    return clone_token_mutation(SigningKeyFile(clone_key_path(home)))


class NoStore(CliError):
    """A command that only reads found no store under the home directory."""

    def __init__(self, home: Path) -> None:
        super().__init__(f"there is no object store in {home}: nothing has been stored there yet (check CDI_HOME "
                         f"or --home; `cdi serve` or `cdi apply` creates it)")


def control_plane_running(home: Path) -> bool:
    """Whether a `cdi serve` holds the controller lock of `home` (tested without taking it)."""
    try:
        fd = os.open(home / LOCK_FILE, os.O_RDONLY)
    except FileNotFoundError:
        return False
    except OSError:
        return True  # cannot tell: do not warn about what may well be there
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True  # the holder's exclusive lock blocks our shared one
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def no_control_plane_warning(home: Path) -> str:
    return (f"warning: no control plane (cdi serve) is running for {home}; objects are stored but nothing will act "
            f"on them until one starts")


def open_cluster(home: Path, *, busy_timeout: float = DEFAULT_BUSY_TIMEOUT, create: bool = False,
                 warn: bool = True) -> EmbeddedCluster:
    """The embedded cluster kept under `home`.

    With `create`, the directory and an empty store are made if needed; without it, a missing store
    raises `NoStore`. With `warn`, unless a `cdi serve` is running for `home`, one warning line goes to
    standard error. Raises `CliError` when the directory cannot be made, and the store's
    `StoreUnavailable` when the file is not a usable database or stays locked past `busy_timeout` seconds.
    """
    if not create and not store_path(home).is_file():
        raise NoStore(home)
    try:
        home.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CliError(f"cannot create the state directory {home}: {e.strerror or e}") from e
    if not home.is_dir():
        raise CliError(f"the state directory {home} is not a directory")
    if warn and not control_plane_running(home):
        print(no_control_plane_warning(home), file=sys.stderr, flush=True)
    return EmbeddedCluster(store_path(home), busy_timeout=busy_timeout, reviews=store_reviews(home),
                           mutation=store_mutation(home))


@contextlib.asynccontextmanager
async def connect_cluster(home: Path, kubeconfig: Path | None, *, busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
                          create: bool = False) -> AsyncIterator[Cluster]:
    """The API server of `kubeconfig` (`cdi.kube`, imported only then), or with None the embedded store under
    `home` (`open_cluster`), open for the `async with` block."""
    if kubeconfig is None:
        async with open_cluster(home, busy_timeout=busy_timeout, create=create) as store:
            yield store
        return
    # The Kubernetes client costs import time no embedded command should pay.
    from cdi.kube import connect
    from cdi.kube.config import KubeConfigError

    try:
        opened = await connect(kubeconfig)
    except KubeConfigError as e:
        raise CliError(str(e)) from e
    async with opened as cluster:
        yield cluster


def pod_log_path(home: Path, namespace: str, name: str, container: str, previous: bool = False) -> Path:
    """The log file of one container of a pod: its current run, or with `previous` the run before.

    The pod runner owns the layout (`cdi.embedded.pods.paths`); its state directory is the home.
    """
    return log_path(home, namespace, name, container, previous)
