"""The embedded store's SQLite file: schema, one worker thread with its connection, and transactions.

Kine-style layout: `objects` holds the current version of every object, keyed by (API group, kind,
namespace, name), with `uid` indexed for garbage collection; `changes` is the log of every write
(resourceVersion, ADDED/MODIFIED/DELETED, the object and its previous version); `owner_refs` indexes
ownerReferences by owner uid; `counters` holds the last resourceVersion handed out and the highest
one compaction removed. All writes go through `BEGIN IMMEDIATE` so several processes (`cdi serve`
and a `cdi apply`) serialise on SQLite's write lock, waiting up to the busy timeout, and take turns
through `cdi.embedded.writegate` first (a waiting writer goes as soon as the lock is free, where
SQLite's busy wait sleeps up to 100 ms at a time); WAL mode lets readers and watchers proceed meanwhile.

`Transaction` is what the write and read functions of `cdi.embedded.mutations` and `cdi.embedded.watch`
receive inside a transaction that `cdi.embedded.database.Database` opened on one of its threads.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass

from cdi.cluster.errors import ApiError
from cdi.cluster.protocol import EventType, Object
from cdi.embedded.semantics import owner_uids

SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    grp TEXT NOT NULL, kind TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL,
    uid TEXT NOT NULL UNIQUE, rv INTEGER NOT NULL, body TEXT NOT NULL,
    PRIMARY KEY (grp, kind, namespace, name)
);
CREATE INDEX IF NOT EXISTS objects_by_namespace ON objects (namespace);
-- Only the objects being deleted: the garbage collector looks for them after every write, and scanning
-- every body instead made each write cost time in proportion to the store's size (at 1,000 DataVolumes,
-- most of the writer's time). Its WHERE must stay the same expression as the queries that use it.
CREATE INDEX IF NOT EXISTS objects_deleting ON objects (grp, kind, namespace, name)
    WHERE json_extract(body, '$.metadata.deletionTimestamp') IS NOT NULL;
CREATE TABLE IF NOT EXISTS owner_refs (
    owner_uid TEXT NOT NULL, grp TEXT NOT NULL, kind TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL,
    PRIMARY KEY (owner_uid, grp, kind, namespace, name)
);
CREATE INDEX IF NOT EXISTS owner_refs_by_dependent ON owner_refs (grp, kind, namespace, name);
CREATE TABLE IF NOT EXISTS changes (
    rv INTEGER PRIMARY KEY, type TEXT NOT NULL,
    grp TEXT NOT NULL, kind TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL,
    body TEXT NOT NULL, prev_body TEXT, changed_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS changes_by_kind ON changes (grp, kind, rv);
-- For compaction, every 128 resourceVersions: which rows are older than the time to keep. Without it the
-- check read every row past the newest kept ones (changed_at sits after the bodies), all of them while
-- nothing is old enough (1.2 us a row: 18 ms at 15,000 changes, growing with the write rate).
CREATE INDEX IF NOT EXISTS changes_by_time ON changes (changed_at, rv);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
-- Start at 1 so that even an empty store lists at a version a watch can start from ("0" means "now").
INSERT OR IGNORE INTO counters (name, value) VALUES ('resource_version', 1), ('compacted', 0);
"""

# The newest change both older than a time and at or below a resourceVersion (parameters in that order).
NEWEST_COMPACTABLE = "SELECT max(rv) FROM changes INDEXED BY changes_by_time WHERE changed_at<=? AND rv<=?"


class StoreUnavailable(ApiError):
    """The database file could not be read or written (locked past the busy timeout, disk full...)."""

    code = 503
    reason = "ServiceUnavailable"
    retryable = True


@dataclass(frozen=True)
class Key:
    """Where an object lives: namespace is "" for cluster-scoped kinds."""

    group: str
    kind: str
    namespace: str
    name: str


@dataclass(frozen=True)
class Change:
    """One row of the change log."""

    resource_version: int
    type: EventType
    object: Object
    previous: Object | None


class Transaction:
    """Row-level operations inside one open SQLite transaction (used on the database thread only)."""

    def __init__(self, conn: sqlite3.Connection, changed_at: float = 0.0) -> None:
        self._conn = conn
        self._changed_at = changed_at
        self.kinds_written: set[tuple[str, str]] = set()  # (group, kind): whose watch streams to wake
        # What this transaction could have orphaned, for `dependents_of_missing_owners`: objects it wrote
        # with owners, and the uids of objects it removed. `sweep_all`: look at every reference instead.
        self._referring: set[Key] = set()
        self._vanished: set[str] = set()
        self.sweep_all = False
        self.assigned: tuple[int, int] | None = None  # the first and last resourceVersion this one assigned

    def get(self, key: Key) -> Object | None:
        row = self._conn.execute("SELECT body FROM objects WHERE grp=? AND kind=? AND namespace=? AND name=?",
                                 (key.group, key.kind, key.namespace, key.name)).fetchone()
        return None if row is None else _load(row[0])

    def objects(self, group: str, kind: str, namespace: str | None) -> list[Object]:
        query, args = "SELECT body FROM objects WHERE grp=? AND kind=?", [group, kind]
        if namespace is not None:
            query, args = query + " AND namespace=?", [*args, namespace]
        return [_load(body) for (body,) in self._conn.execute(query + " ORDER BY namespace, name", args)]

    def keys_in_namespace(self, namespace: str) -> list[Key]:
        rows = self._conn.execute("SELECT grp, kind, namespace, name FROM objects WHERE namespace=?", (namespace,))
        return [Key(*row) for row in rows]

    def uid_exists(self, uid: str, dependent_namespace: str) -> bool:
        """Whether an owner with `uid` exists where a dependent in `dependent_namespace` may see it."""
        row = self._conn.execute("SELECT 1 FROM objects WHERE uid=? AND (namespace='' OR namespace=?)",
                                 (uid, dependent_namespace)).fetchone()
        return row is not None

    def dependents_of(self, uid: str) -> list[Key]:
        """The objects whose ownerReferences name `uid`."""
        rows = self._conn.execute("SELECT grp, kind, namespace, name FROM owner_refs WHERE owner_uid=? "
                                  "ORDER BY grp, kind, namespace, name", (uid,))
        return [Key(*row) for row in rows]

    def foreground_deleting(self) -> list[Key]:
        """Objects waiting for their dependents (deleted with propagationPolicy Foreground)."""
        rows = self._conn.execute("SELECT grp, kind, namespace, name FROM objects WHERE "
                                  "json_extract(body, '$.metadata.deletionTimestamp') IS NOT NULL AND "
                                  "EXISTS (SELECT 1 FROM json_each(body, '$.metadata.finalizers') "
                                  "WHERE value = 'foregroundDeletion') ORDER BY grp, kind, namespace, name")
        return [Key(*row) for row in rows]

    def dependents_of_missing_owners(self) -> list[Key]:
        """Objects naming an owner that does not exist where they may see it (cluster-scoped, or in their
        namespace). Every write collects what it orphans in its own transaction, so only what this one
        touched since the last call is looked at: objects it wrote with owners and the dependents of those
        it removed. Looking at every reference after each write made a write's cost grow with the store."""
        missing = ("NOT EXISTS (SELECT 1 FROM objects o WHERE o.uid = r.owner_uid"
                   " AND (o.namespace = '' OR o.namespace = r.namespace))")
        if self.sweep_all:
            rows = self._conn.execute(f"SELECT DISTINCT r.grp, r.kind, r.namespace, r.name FROM owner_refs r "
                                      f"WHERE {missing} ORDER BY r.grp, r.kind, r.namespace, r.name")
            return [Key(*row) for row in rows]
        candidates = set(self._referring)
        for uid in self._vanished:
            candidates.update(self.dependents_of(uid))
        self._referring.clear()
        self._vanished.clear()
        found = []
        for key in sorted(candidates, key=lambda k: (k.group, k.kind, k.namespace, k.name)):
            row = self._conn.execute(f"SELECT 1 FROM owner_refs r WHERE r.grp=? AND r.kind=? AND r.namespace=? "
                                     f"AND r.name=? AND {missing} LIMIT 1",
                                     (key.group, key.kind, key.namespace, key.name)).fetchone()
            if row is not None:
                found.append(key)
        return found

    def terminating_namespaces(self) -> list[str]:
        rows = self._conn.execute("SELECT name FROM objects WHERE grp='' AND kind='Namespace' AND "
                                  "json_extract(body, '$.metadata.deletionTimestamp') IS NOT NULL ORDER BY name")
        return [name for (name,) in rows]

    def current_rv(self) -> int:
        return self._counter("resource_version")

    def compacted_rv(self) -> int:
        return self._counter("compacted")

    def put(self, key: Key, obj: Object, type_: EventType, previous: Object | None) -> Object:
        """Store `obj` under a new resourceVersion and log the change; returns the stored object."""
        rv = self._next_rv()
        obj["metadata"]["resourceVersion"] = str(rv)
        body = _dump(obj)
        self._conn.execute("INSERT OR REPLACE INTO objects (grp, kind, namespace, name, uid, rv, body) "
                           "VALUES (?, ?, ?, ?, ?, ?, ?)",
                           (key.group, key.kind, key.namespace, key.name, obj["metadata"]["uid"], rv, body))
        owners = owner_uids(obj)
        if _owners_changed(type_, owners, previous):
            self._set_owner_refs(key, owners)
        if owners:
            self._referring.add(key)
        self._log(rv, type_, key, body, previous)
        return obj

    def remove(self, key: Key, obj: Object) -> Object:
        """Delete the object for real and log a DELETED change carrying its final state."""
        rv = self._next_rv()
        obj["metadata"]["resourceVersion"] = str(rv)
        self._conn.execute("DELETE FROM objects WHERE grp=? AND kind=? AND namespace=? AND name=?",
                           (key.group, key.kind, key.namespace, key.name))
        self._set_owner_refs(key, [])
        self._vanished.add(str(obj["metadata"]["uid"]))
        self._log(rv, "DELETED", key, _dump(obj), None)
        return obj

    def changes_after(self, rv: int, group: str, kind: str, namespace: str | None, limit: int) -> list[Change]:
        query = "SELECT rv, type, body, prev_body FROM changes WHERE grp=? AND kind=? AND rv>?"
        args: list[str | int] = [group, kind, rv]
        if namespace is not None:
            query, args = query + " AND namespace=?", [*args, namespace]
        rows = self._conn.execute(query + " ORDER BY rv LIMIT ?", [*args, limit]).fetchall()
        return [Change(rv, type_, _load(body), None if prev is None else _load(prev))
                for rv, type_, body, prev in rows]

    def compact(self, keep: int, older_than: float) -> int:
        """Drop change rows beyond the newest `keep` that were written before `older_than`."""
        horizon = self.current_rv() - keep
        newest_old = self._conn.execute(NEWEST_COMPACTABLE, (older_than, horizon)).fetchone()[0]
        if newest_old is None:
            return 0
        removed = self._conn.execute("DELETE FROM changes WHERE rv<=?", (newest_old,)).rowcount
        self._conn.execute("UPDATE counters SET value=max(value, ?) WHERE name='compacted'", (newest_old,))
        return removed

    def _counter(self, name: str) -> int:
        value: int = self._conn.execute("SELECT value FROM counters WHERE name=?", (name,)).fetchone()[0]
        return value

    def _next_rv(self) -> int:
        value: int = self._conn.execute("UPDATE counters SET value=value+1 WHERE name='resource_version' "
                                        "RETURNING value").fetchone()[0]
        self.assigned = (value if self.assigned is None else self.assigned[0], value)
        return value

    def assigned_a_multiple_of(self, every: int) -> bool:
        """Whether a resourceVersion this transaction assigned is a multiple of `every`."""
        return self.assigned is not None and (self.assigned[0] - 1) // every != self.assigned[1] // every

    def _set_owner_refs(self, key: Key, uids: list[str]) -> None:
        where = (key.group, key.kind, key.namespace, key.name)
        self._conn.execute("DELETE FROM owner_refs WHERE grp=? AND kind=? AND namespace=? AND name=?", where)
        self._conn.executemany("INSERT OR IGNORE INTO owner_refs (owner_uid, grp, kind, namespace, name) "
                               "VALUES (?, ?, ?, ?, ?)", [(uid, *where) for uid in uids])

    def _log(self, rv: int, type_: EventType, key: Key, body: str, previous: Object | None) -> None:
        self.kinds_written.add((key.group, key.kind))
        self._conn.execute("INSERT INTO changes (rv, type, grp, kind, namespace, name, body, prev_body, changed_at) "
                           "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                           (rv, type_, key.group, key.kind, key.namespace, key.name, body,
                            None if previous is None else _dump(previous), self._changed_at))


def _owners_changed(type_: EventType, owners: list[str], previous: Object | None) -> bool:
    """Whether a write must rewrite its owner rows: they change only with the ownerReferences. An
    object's first write has none yet (its rows went with its last incarnation); most updates keep the
    stored object's."""
    if type_ == "ADDED":
        return bool(owners)
    return previous is None or owners != owner_uids(previous)


def _dump(obj: Object) -> str:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True)


def _load(body: str) -> Object:
    doc: Object = json.loads(body)
    return doc
