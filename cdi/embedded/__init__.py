"""The embedded control plane's object store: the `Cluster` protocol on one SQLite file, kine-style.

`EmbeddedCluster` (in `store`) is what `cdi serve`, the CLI and tests construct; the rest are its
parts: `sqlite` (schema, worker thread, transactions), `mutations` (each verb and garbage
collection), `semantics` (the API server's pure rules), `selectors` (label selectors) and `watch`
(change-log replay and wake-ups).
"""

from cdi.embedded.store import EmbeddedCluster

__all__ = ["EmbeddedCluster"]
