"""Continuing the streaming qcow2 pass at a checkpoint, from the image's own metadata rather than a
saved copy of the pass's state.

A checkpoint is taken at a host cluster boundary `position`. Everything the pass knew there follows
from bytes of the image before `position`, which are few: the header and L1 table, the refcount table
clusters and the L2 tables already passed, the first part of a compressed cluster that runs on past
`position`, and the clusters the spool holds for an L2 table further on (rare in qemu's layouts: a
compressed cluster packed in just before a new L2 table; `Engine.held_back` refuses a checkpoint
while they exceed a few MiB). So a record keeps only where those bytes are (`RestartRecord`:
coalesced ranges, and which clusters were spooled); the restarted importer fetches them again
(ranged requests pinned to the same version of the source) and `plan_restart` rebuilds, as the
uninterrupted pass would have them at `position`: each host cluster's state (metadata, claimed by a
guest cluster, claimed by compressed data, spooled, or seen and unclaimed), the L2 tables passed with
their cursors at the first extent at or past `position` (the pass's heap), the compressed clusters
being assembled and the spool. Clusters before `position` claimed by an L2 table read later are
checked as the pass would check them then; clusters the pass refused as overlapping are refused here
too.

`importer.main` fetches and calls `plan_restart` before it asks the source for the rest, so a record
that does not fit the image means starting over (`RestartMismatch`), not a failed import;
`Qcow2Stream.restarted` continues with the result. Pure.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from importer.qcow2stream.engine import (
    CDATA,
    DATA,
    FREE,
    META,
    SEEN,
    SHARED_C,
    SHARED_D,
    Restarted,
    earlier_claim,
    metadata_clusters,
    plausible_end,
    spooled_state,
)
from importer.qcow2stream.engine import reftable_clusters as _reftable_clusters
from importer.qcow2stream.layout import Decline, Layout, read_layout
from importer.qcow2stream.tables import COMPRESSED, OFFSET_MASK, Extent, L2Table, _words, corrupt, parse_l1

Ranges = Sequence[tuple[int, int]]


class RestartMismatch(Exception):
    """The record cannot continue this image (it names other ranges than the image's tables need)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Restart:
    layout: Layout
    tables: list[tuple[int, int]]
    position: int
    rebuilt: Restarted


def metadata_ranges(layout: Layout, tables: list[tuple[int, int]], position: int, partial: Ranges = (),
                    spooled: Sequence[int] = ()) -> Ranges:
    """[start, end) byte ranges holding what a pass restarted at `position` needs, coalesced: the
    header and L1 table, the L2 and refcount table clusters before `position`, `partial` (the first
    parts of compressed clusters that run on past it) and the `spooled` clusters."""
    cs = layout.cluster_size
    first = position // cs
    clusters = {offset // cs for _, offset in tables if offset < position} | set(spooled)
    clusters |= {c for c in _reftable_clusters(layout) if c < first}
    ranges = sorted([(0, layout.l1_end), *((c * cs, (c + 1) * cs) for c in clusters), *partial])
    merged: list[tuple[int, int]] = []
    for start, end in ranges:
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


@dataclass(frozen=True)
class RestartRecord:
    """What a record keeps for a qcow2 restart (`Checkpoint.decoder_state`): the ranges to read again
    and which host clusters of them the spool held."""

    ranges: list[tuple[int, int]]
    spooled: list[int]

    def encode(self) -> bytes:
        return json.dumps({"qcow2_metadata": self.ranges, "spooled": self.spooled}, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, state: bytes) -> RestartRecord:
        try:
            doc = json.loads(state)
            parsed = [(int(start), int(end)) for start, end in doc["qcow2_metadata"]]
            spooled = [int(cluster) for cluster in doc["spooled"]]
        except (ValueError, TypeError, KeyError) as e:
            raise RestartMismatch(f"the checkpoint does not say where the image's tables are ({e})") from e
        if not parsed or parsed[0][0] != 0 or any(not 0 <= s < e for s, e in parsed) or min(spooled, default=0) < 0:
            raise RestartMismatch("the checkpoint's list of the image's tables is not usable")
        return cls(parsed, spooled)


def plan_restart(position: int, fetched: Mapping[int, bytes], spooled: Sequence[int] = ()) -> Restart:
    """Rebuild the pass at `position` from the ranges fetched again (start offset -> bytes); `spooled`:
    the clusters the spool held there, as the record says."""
    header = fetched.get(0, b"")
    try:
        layout = read_layout(header)
    except Decline as e:
        raise RestartMismatch(f"the image's header no longer reads as it did: {e.reason}") from e
    cs = layout.cluster_size
    if position % cs or len(header) < layout.l1_end:
        raise RestartMismatch(f"the checkpoint at byte {position} is not where this image's clusters start")
    tables = parse_l1(header[layout.l1_offset:layout.l1_end], layout)
    clusters: dict[int, bytes] = {}
    for start, end in metadata_ranges(layout, tables, position, spooled=spooled):
        data = _covered(fetched, start, end)
        if data is None:
            raise RestartMismatch(f"the checkpoint did not keep the place of the image's tables at bytes "
                                  f"{start}-{end - 1}")
        for at in range(start - start % cs, end, cs):
            if at >= start and at + cs <= end:
                clusters[at // cs] = data[at - start:at - start + cs]
    return Restart(layout, tables, position, rebuild(layout, tables, position, clusters,
                                                     lambda start, end: _covered(fetched, start, end), spooled))


def _covered(fetched: Mapping[int, bytes], start: int, end: int) -> bytes | None:
    for at, data in fetched.items():
        if at <= start and end <= at + len(data):
            return data[start - at:end - at]
    return None


def rebuild(layout: Layout, tables: list[tuple[int, int]], position: int, clusters: Mapping[int, bytes],
            read: Callable[[int, int], bytes | None] = lambda start, end: None,
            spooled: Sequence[int] = ()) -> Restarted:
    """The pass's state after the host clusters before `position`, from the L2 and refcount table
    clusters among them and the `spooled` ones (`clusters`, by cluster index); `read(start, end)` gives
    the image's bytes there, for compressed clusters that run on past `position`."""
    return _Rebuild(layout, tables, position, clusters, read, spooled).run()


class _Rebuild:
    def __init__(self, layout: Layout, tables: list[tuple[int, int]], position: int,
                 clusters: Mapping[int, bytes], read: Callable[[int, int], bytes | None],
                 spooled: Sequence[int]) -> None:
        self._layout = layout
        self._read = read
        self._spooled = sorted(spooled)
        self._partial: list[tuple[Extent, bytes]] = []
        self._cs = layout.cluster_size
        self._position = position
        self._first = position // self._cs
        self._clusters = clusters
        self._l2_at = {offset // self._cs: index for index, offset in tables}
        self._limit = plausible_end(layout)
        self._states = bytearray(self._first)

    def run(self) -> Restarted:
        for cluster in metadata_clusters(self._layout, sorted(self._l2_at)):
            self._mark(cluster, META)
        for cluster in _reftable_clusters(self._layout):
            if cluster < self._first:
                self._read_reftable(cluster)
        passed = sorted(c for c in self._l2_at if c < self._first)
        if any(not 0 <= c < self._first for c in self._spooled) or (self._spooled and len(passed) == len(self._l2_at)):
            raise RestartMismatch("the checkpoint says clusters were held back where none could be")
        # In stream order: a spooled cluster is marked when it is passed (after the claims on it), so
        # that tables read later find it as the pass did.
        events = sorted([(c, False) for c in passed] + [(c, True) for c in self._spooled])
        kept = [table for c, spooled in events if (table := self._passed(c, spooled)) is not None]
        if len(passed) < len(self._l2_at):
            # Tables still to come: every other cluster passed and not claimed was seen (all zeros
            # outside any claim, or it would have been spooled).
            self._states[:self._first] = self._states[:self._first].replace(bytes([FREE]), bytes([SEEN]))
        spooled = [(c, self._table(c)) for c in self._spooled]
        return Restarted(self._states, kept, len(passed), self._partial, spooled)

    def _passed(self, cluster: int, spooled: bool) -> L2Table | None:
        if spooled:
            self._mark(cluster, spooled_state(self._state(cluster)))
            return None
        return self._read_l2(cluster)

    def _read_reftable(self, cluster: int) -> None:
        data = self._table(cluster)
        for entry in _words(data[:len(data) // 8 * 8]):
            block = (entry & OFFSET_MASK) >> self._layout.cluster_bits
            if cluster < block < self._limit // self._cs and self._state(block) == FREE:
                self._mark(block, META)

    def _read_l2(self, cluster: int) -> L2Table:
        table = L2Table(self._table(cluster), self._l2_at[cluster], self._layout)
        start = cluster * self._cs
        while (first := table.peek_start()) is not None and first < self._position:
            extent = table.take()
            if extent is None:
                continue
            if extent.end > self._limit:
                raise corrupt(f"guest offset {extent.guest:#x} is at host offset {extent.end:#x}, beyond any "
                              f"plausible end of this image")
            if extent.start < start + self._cs:
                if extent.end > start:
                    raise corrupt(f"the data of guest offset {extent.guest:#x} overlaps its own L2 table")
                self._earlier(extent)
            elif extent.end > self._position:
                self._run_on(extent)
            else:
                self._claim(extent, extent.end)
        return table

    def _earlier(self, extent: Extent) -> None:
        """Data the stream passed before its table: the pass took it from the spool (or as zeros)."""
        for cluster in self._spanned(extent):
            state = self._state(cluster)
            after = earlier_claim(SEEN if state == FREE else state, extent.kind)  # FREE here: SEEN in the pass
            if after is None:
                raise _overlap(cluster * self._cs, extent, state)
            self._mark(cluster, FREE if after == SEEN else after)

    def _run_on(self, extent: Extent) -> None:
        """A compressed cluster the checkpoint cuts: claimed so far, assembled from its first part."""
        head = self._read(extent.start, self._position) if extent.kind == COMPRESSED else None
        if head is None:
            raise RestartMismatch(f"the checkpoint at byte {self._position} falls inside the data of guest "
                                  f"offset {extent.guest:#x}, and the record did not name that data")
        self._claim(extent, self._position)
        self._partial.append((extent, head))

    def _claim(self, extent: Extent, end: int) -> None:
        """Claim the host clusters of `extent` the stream has passed (those before `end`)."""
        wanted = CDATA if extent.kind == COMPRESSED else DATA
        for cluster in range(extent.start // self._cs, (end - 1) // self._cs + 1):
            state = self._state(cluster)
            if state != FREE and not (state == CDATA == wanted):
                raise _overlap(cluster * self._cs, extent, state)
            self._mark(cluster, wanted)

    def _spanned(self, extent: Extent) -> range:
        return range(extent.start // self._cs, (extent.end - 1) // self._cs + 1)

    def _table(self, cluster: int) -> bytes:
        data = self._clusters.get(cluster)
        if data is None or len(data) != self._cs:
            raise RestartMismatch(f"the cluster at host offset {cluster * self._cs:#x} was not fetched again")
        return data

    def _state(self, cluster: int) -> int:
        return self._states[cluster] if cluster < len(self._states) else FREE

    def _mark(self, cluster: int, state: int) -> None:
        if cluster >= len(self._states):
            self._states.extend(bytes(cluster + 1 - len(self._states)))
        self._states[cluster] = state


_ROLE = {META: "metadata", DATA: "another guest cluster", CDATA: "compressed data", SHARED_C: "compressed data",
         SHARED_D: "another guest cluster"}


def _overlap(host: int, extent: Extent, state: int) -> Exception:
    return corrupt(f"the host cluster at {host:#x} holds guest offset {extent.guest:#x} and is also "
                   f"{_ROLE.get(state, 'in use')}")
