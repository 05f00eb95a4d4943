"""The single pass: host clusters in stream order in, guest data out at its guest offsets.

Each host cluster is handled once, when the stream reaches it. The header and L1 table come first
(`Qcow2Stream.prepare` reads up to the end of the L1 table, which qemu puts in the first few
clusters); the L1 names every L2 table, so from then on the reader knows which clusters are
metadata. An L2 table, when reached, turns into extents: those further on wait in a heap ordered by
host offset and are written when their bytes arrive; those already passed come from the `Spool`,
which kept every non-zero cluster nobody had claimed while an L2 table was still ahead. Each host
cluster is claimed once (metadata, data, or shared by compressed clusters), so overlapping or
self-referencing tables are refused as qemu-img check would, and extents the stream never reaches
mean a truncated image. Guest clusters never mentioned stay holes. Called by `importer.qcow2stream`.

A checkpoint may follow any host cluster unless too much is spooled (`held_back`); what the pass
holds then is the image's own bytes, so `importer.qcow2stream.restart` rebuilds it (`Restarted`)
from those bytes read again, and an engine built with it continues at the checkpoint.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

from importer.qcow2stream.compressed import Inflater
from importer.qcow2stream.layout import Layout
from importer.qcow2stream.output import DiskOutput
from importer.qcow2stream.spool import Spool
from importer.qcow2stream.tables import ALL_SUBCLUSTERS, COMPRESSED, OFFSET_MASK, Extent, L2Table, _words, corrupt

# Host cluster states. SHARED_C/SHARED_D: spooled, and part of it already holds compressed data
# (more compressed data may follow) or a guest cluster's data (nothing else may).
FREE, SEEN, SPOOLED, META, DATA, CDATA, SHARED_C, SHARED_D = range(8)
KEPT = (SPOOLED, SHARED_C, SHARED_D)
_ROLE = {SPOOLED: "unclaimed data", META: "metadata", DATA: "another guest cluster", CDATA: "compressed data",
         SHARED_C: "compressed data", SHARED_D: "another guest cluster"}


def spooled_state(state: int) -> int:
    """A cluster's state once it is spooled, from its state before (claimed in part, or not)."""
    return SHARED_C if state == CDATA else SHARED_D if state == DATA else SPOOLED


def earlier_claim(state: int, kind: int) -> int | None:
    """A passed cluster's state after an L2 table read later claims data in it (None: it may not)."""
    if state == SEEN or (state == SPOOLED and kind != COMPRESSED):
        return DATA if kind != COMPRESSED else state
    if state in (SPOOLED, SHARED_C) and kind == COMPRESSED:
        return SHARED_C
    return None
_REFTABLE_CLUSTERS_READ = 64
SPOOL_REREAD_LIMIT = 4 << 20  # spooled bytes a checkpoint may leave for its restart to read again


def reftable_clusters(layout: Layout) -> range:
    """The refcount table clusters the pass reads (to know which clusters further on are refcount blocks)."""
    first = layout.cluster_of(layout.refcount_table_offset)
    return range(first, first + min(layout.refcount_table_clusters, _REFTABLE_CLUSTERS_READ))


def metadata_clusters(layout: Layout, l2_clusters: list[int]) -> list[int]:
    """The clusters the header and L1 table name as metadata: header, L1, L2 tables, refcount table."""
    l1_clusters = range(layout.cluster_of(layout.l1_offset), layout.cluster_of(max(layout.l1_end - 1, 0)) + 1)
    reftable = [c for c in reftable_clusters(layout) if c < plausible_end(layout) >> layout.cluster_bits]
    return [0, *l1_clusters, *l2_clusters, *reftable]


def plausible_end(layout: Layout) -> int:
    """No plausible image is larger than this many bytes."""
    return 4 * layout.virtual_size + (1 << 30)


@dataclass
class Restarted:
    """What the pass knew at a checkpoint, rebuilt from the image's metadata (`importer.qcow2stream.restart`):
    each host cluster's state up to there, the L2 tables already passed (cursors at their first extent
    at or past the checkpoint), how many L2 tables that is, the compressed clusters that run on past
    the checkpoint with their bytes before it, and the clusters the spool held."""

    states: bytearray
    tables: list[L2Table]
    tables_passed: int
    partial: list[tuple[Extent, bytes]] = field(default_factory=list)
    spooled: list[tuple[int, bytes]] = field(default_factory=list)  # clusters the spool held, read again


@dataclass
class _Active:
    extent: Extent
    parts: list[bytes | memoryview] = field(default_factory=list)


class Engine:
    """Consumes host clusters in order through `feed`, then `finish` at the end of the stream."""

    def __init__(self, layout: Layout, tables: list[tuple[int, int]], output: DiskOutput, spool: Spool,
                 restart: Restarted | None = None) -> None:
        """`restart`: continue at a checkpoint, with what the pass up to there knew (`importer.qcow2stream.restart`)."""
        self._layout = layout
        self._cs = layout.cluster_size
        self._output = output
        self._spool = spool
        self._limit = plausible_end(layout)
        self._state = bytearray()
        self._zeros = bytes(self._cs)
        self.inflater = Inflater(self._cs, layout.compression, output.write_cluster)
        self._heap: list[tuple[int, int, L2Table]] = []
        self._active: list[_Active] = []
        self._seq = 0
        self._l2_at: dict[int, int] = {}
        for index, offset in tables:
            self._check_host(offset + self._cs, "an L2 table")
            if offset >> layout.cluster_bits in self._l2_at:
                raise corrupt(f"two L1 entries share the L2 table at {offset:#x}")
            self._l2_at[offset >> layout.cluster_bits] = index
        self._ahead = sorted(self._l2_at)
        self._ahead_pos = 0
        self._reftable = reftable_clusters(layout)
        if restart is not None:
            self._state = restart.states
            self._ahead_pos = restart.tables_passed
            self._active = [_Active(extent, [memoryview(head)]) for extent, head in restart.partial]
            for cluster, data in restart.spooled:
                spool.put(cluster, data, f"host cluster {cluster * self._cs:#x} was held back at the checkpoint")
            for table in restart.tables:
                self._push(table)
            return
        for cluster in metadata_clusters(layout, self._ahead):
            self._mark(cluster, META)

    @property
    def done(self) -> bool:
        return not self._heap and not self._active and self._ahead_pos >= len(self._ahead)

    def held_back(self) -> str | None:
        """Why no checkpoint may be taken after the clusters fed so far (None: one may). What the pass
        holds is the image's own bytes, which a restart reads again: the first parts of compressed
        clusters that run on (`partial_starts`) and spooled clusters (`spooled`), as long as there are
        few of those."""
        if len(self._spool) * self._cs > SPOOL_REREAD_LIMIT:
            return (f"{len(self._spool)} host clusters that came before the L2 table mapping them are held back "
                    f"until it arrives (a restart reads at most {SPOOL_REREAD_LIMIT >> 20} MiB of them again)")
        return None

    def spooled(self) -> list[int]:
        """The host clusters held for an L2 table further on."""
        return self._spool.clusters()

    def partial_starts(self) -> list[int]:
        """Where the compressed clusters that run on past the clusters fed so far begin (a restart reads
        their first part again)."""
        return [active.extent.start for active in self._active]

    def partial_heads(self) -> list[tuple[int, bytes]]:
        """(start, bytes) of the compressed clusters that run on past the clusters fed so far, as far as fed."""
        return [(active.extent.start, b"".join(active.parts)) for active in self._active]

    def spooled_data(self) -> list[tuple[int, bytes]]:
        """(host offset, bytes) of the clusters held for an L2 table further on."""
        found = []
        for cluster in self._spool.clusters():
            data = self._spool.get(cluster)
            if data is not None:
                found.append((cluster * self._cs, data))
        return found

    def drain(self) -> None:
        """Let every compressed cluster submitted so far be inflated and written."""
        self.inflater.drain()

    def feed(self, cluster: int, data: bytes | memoryview) -> None:
        start = cluster * self._cs
        self._activate(start)
        covered = self._feed_active(cluster, start, data)
        if cluster in self._l2_at:
            self._read_l2(cluster, start, data)
        elif cluster in self._reftable:
            self._read_reftable(cluster, data)
        while self._ahead_pos < len(self._ahead) and self._ahead[self._ahead_pos] <= cluster:
            self._ahead_pos += 1
        if self._ahead_pos < len(self._ahead):
            self._keep_unclaimed(cluster, data, covered)
        else:
            self._spool.clear()

    def finish(self, end: int) -> None:
        """The stream ended at byte `end`: flush clusters cut short, refuse anything still missing."""
        for active in self._active:
            if active.extent.start >= end:
                raise _truncated(end, f"the data of guest offset {active.extent.guest:#x}", active.extent.start)
            self._emit(active.extent, active.parts)
        self._active = []
        self.inflater.drain()
        if self._heap:
            start, _, table = self._heap[0]
            raise _truncated(end, f"the data of guest offset {table.guest_base:#x} onwards", start)
        if self._ahead_pos < len(self._ahead):
            raise _truncated(end, "an L2 table", self._ahead[self._ahead_pos] * self._cs)
        self._spool.clear()

    def _activate(self, start: int) -> None:
        """Start every extent that begins in the cluster at `start`."""
        limit = start + self._cs
        while self._heap and self._heap[0][0] < limit:
            _, _, table = heapq.heappop(self._heap)
            extent = table.take()
            self._push(table)
            if extent is not None:
                self._check_host(extent.end, f"guest offset {extent.guest:#x}")
                self._active.append(_Active(extent))

    def _feed_active(self, cluster: int, start: int, data: bytes | memoryview) -> list[tuple[int, int]]:
        end = start + len(data)
        covered: list[tuple[int, int]] = []
        waiting: list[_Active] = []
        for active in self._active:
            extent = active.extent
            low, high = max(extent.start, start), min(extent.end, end)
            if high > low:
                self._claim(cluster, extent)
                covered.append((low - start, high - start))
                active.parts.append(memoryview(data)[low - start:high - start])
            if extent.end <= end:
                self._emit(extent, active.parts)
            else:
                waiting.append(active)
        self._active = waiting
        return covered

    def _read_l2(self, cluster: int, start: int, data: bytes | memoryview) -> None:
        if len(data) < self._cs:
            raise _truncated(start + len(data), "the end of an L2 table", start)
        table = L2Table(bytes(data), self._l2_at[cluster], self._layout)
        while (first := table.peek_start()) is not None and first < start + self._cs:
            extent = table.take()
            if extent is None:
                continue
            if extent.end > start:
                raise corrupt(f"the data of guest offset {extent.guest:#x} overlaps its own L2 table")
            self._from_spool(extent)
        self._push(table)

    def _push(self, table: L2Table) -> None:
        if (first := table.peek_start()) is not None:
            self._seq += 1
            heapq.heappush(self._heap, (first, self._seq, table))

    def _read_reftable(self, cluster: int, data: bytes | memoryview) -> None:
        """Refcount blocks further on are metadata, not data waiting for an L2 table: never spool them."""
        for entry in _words(bytes(data[:len(data) // 8 * 8])):
            block = (entry & OFFSET_MASK) >> self._layout.cluster_bits
            if cluster < block < self._limit // self._cs and self._state_of(block) == FREE:
                self._mark(block, META)

    def _keep_unclaimed(self, cluster: int, data: bytes | memoryview, covered: list[tuple[int, int]]) -> None:
        state = self._state_of(cluster)
        if state == META:
            return
        view = memoryview(data)
        gap_start = 0
        for low, high in sorted(covered):
            if low > gap_start and self._nonzero(view[gap_start:low]):
                break
            gap_start = max(gap_start, high)
        else:
            if gap_start >= len(view) or not self._nonzero(view[gap_start:]):
                if state == FREE:
                    self._mark(cluster, SEEN)
                return
        self._spool.put(cluster, bytes(data), f"host cluster {cluster * self._cs:#x} precedes the L2 table "
                                              f"that may map it")
        self._mark(cluster, spooled_state(state))

    def _nonzero(self, view: memoryview) -> bool:
        return bytes(view) != self._zeros[:len(view)]  # bytes compare with memcmp; memoryviews do not

    def _from_spool(self, extent: Extent) -> None:
        """An extent the stream has already passed: its clusters were spooled, or were all zeros."""
        self._check_host(extent.end, f"guest offset {extent.guest:#x}")
        parts: list[bytes | memoryview] = []
        for cluster in range(extent.start // self._cs, (extent.end - 1) // self._cs + 1):
            state = self._state_of(cluster)
            after = earlier_claim(state, extent.kind)
            if after is None:
                raise _overlap(cluster * self._cs, extent, state)
            kept = self._spool.get(cluster) if state in KEPT else None
            base = cluster * self._cs
            low, high = max(extent.start, base) - base, min(extent.end, base + self._cs) - base
            parts.append(memoryview(kept)[low:high] if kept is not None else bytes(high - low))
            self._mark(cluster, after)
            if after == DATA:
                self._spool.discard(cluster)  # a guest cluster's data now: nothing else may claim it
        self._emit(extent, parts)

    def _claim(self, cluster: int, extent: Extent) -> None:
        state = self._state_of(cluster)
        wanted = CDATA if extent.kind == COMPRESSED else DATA
        if state != FREE and not (state == CDATA == wanted):
            raise _overlap(cluster * self._cs, extent, state)
        self._mark(cluster, wanted)

    def _emit(self, extent: Extent, parts: list[bytes | memoryview]) -> None:
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        self._output.reach(extent.guest + (self._cs if extent.kind == COMPRESSED else len(data)))
        if extent.kind == COMPRESSED:
            data = bytes(data).ljust(extent.end - extent.start, b"\0")  # qemu reads past EOF as zeros
            self.inflater.submit(extent.guest, data)
        elif extent.mask == ALL_SUBCLUSTERS:
            self._output.write(extent.guest, data)
        else:
            self._write_subclusters(extent, memoryview(data))

    def _write_subclusters(self, extent: Extent, data: memoryview) -> None:
        size = self._layout.subcluster_size
        for index in range(32):
            if extent.mask >> index & 1:
                self._output.write(extent.guest + index * size, data[index * size:(index + 1) * size])

    def _check_host(self, end: int, what: str) -> None:
        if end > self._limit:
            raise corrupt(f"{what} is at host offset {end:#x}, beyond any plausible end of this image")

    def _state_of(self, cluster: int) -> int:
        return self._state[cluster] if cluster < len(self._state) else FREE

    def _mark(self, cluster: int, state: int) -> None:
        if cluster >= len(self._state):
            self._state.extend(bytes(max(cluster + 1 - len(self._state), len(self._state))))
        self._state[cluster] = state


def _overlap(host: int, extent: Extent, state: int) -> Exception:
    return corrupt(f"the host cluster at {host:#x} holds guest offset {extent.guest:#x} and is also "
                   f"{_ROLE.get(state, 'in use')}")


def _truncated(end: int, what: str, offset: int) -> Exception:
    return corrupt(f"the stream ended at byte {end}, before {what} at host offset {offset:#x}")
