"""Streaming qcow2 to raw: one front-to-back pass over the (decompressed) image, no scratch space.

`importer.transfer` builds a `Qcow2Stream` over the image reader once `importer.qcow2header` has
passed the header, calls `prepare` (reads the header and L1 table, which qemu places in the first
clusters) and then `run`, which writes the guest disk through `DiskOutput`. Output is byte-identical
to `qemu-img convert -O raw`: same L2 semantics, same decompression rules, zeros where nothing is
allocated. `prepare` raises `Decline` when the image is outside what one bounded pass can handle (its
L1 table lies after the data, its tables would not fit the memory budget, or a header field qemu might
still accept is unusual); nothing is lost then, as `prefix` holds every byte read so far for the
scratch-space path. `run` raises `SpoolExhausted` when too much data arrives before its L2 table
and there is no scratch space to keep it in.

Checkpoints: `run` calls a `ClusterHook` after every host cluster; unless too much is held back
(`held_back`), `sync` makes the disk durable and `restart_state` names the bytes a restart reads again.
`Qcow2Stream.restarted` continues such a checkpoint with the state `restart` rebuilt. An upload,
whose client cannot be asked for those bytes again, keeps them as they pass (the hook's `passed`,
and `restart_pieces` for the cut compressed cluster and the spool) and may take a record inside a
cluster (the hook's `inside`), where its chunk ended.

Modules: `layout` (header), `tables` (L1/L2 entries), `compressed` (deflate/zstd clusters), `engine`
(the pass), `spool` (clusters seen before their table), `output` (sparse positioned writes),
`restart` (the pass's state at a checkpoint, rebuilt from the image's metadata).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from importer.formats import read_up_to
from importer.qcow2stream.engine import Engine
from importer.qcow2stream.layout import Decline, Layout, read_layout
from importer.qcow2stream.output import DiskOutput
from importer.qcow2stream.restart import Restart, RestartRecord, metadata_ranges
from importer.qcow2stream.spool import MEMORY_LIMIT, Spool, SpoolExhausted
from importer.qcow2stream.tables import corrupt, parse_l1
from importer.reader import Reader

__all__ = ["ClusterHook", "Decline", "DiskOutput", "Layout", "Qcow2Stream", "SpoolExhausted", "read_layout"]

PREFIX_LIMIT = 16 << 20  # the L1 table must end within this many bytes of the start
TABLE_MEMORY_LIMIT = 64 << 20  # L2 tables the pass may have to hold at once


class ClusterHook(Protocol):
    """Who takes checkpoints (`importer.checkpointing`): told the output before the pass starts, shown
    every piece the pass is fed (`passed`: an upload keeps the table clusters a restart will want),
    called after every host cluster once the prefix is through, and after each read that leaves a
    cluster incomplete (`inside`: `tail` holds the bytes read of it so far)."""

    def attach(self, output: DiskOutput) -> None: ...

    def passed(self, stream: Qcow2Stream, start: int, data: bytes | memoryview) -> None: ...

    def __call__(self, stream: Qcow2Stream) -> None: ...

    def inside(self, stream: Qcow2Stream, tail: Sequence[bytes]) -> None: ...


class Qcow2Stream:
    def __init__(self, reader: Reader, layout: Layout) -> None:
        self.layout = layout
        self.prefix = b""
        self.spilled = 0
        self.position = 0  # host bytes fed to the engine
        self._reader = reader
        self._tables: list[tuple[int, int]] = []
        self._restart: Restart | None = None
        self._engine: Engine | None = None
        self._output: DiskOutput | None = None

    @classmethod
    def restarted(cls, reader: Reader, restart: Restart) -> Qcow2Stream:
        """Continue at a checkpoint: `reader` starts at `restart.position`."""
        stream = cls(reader, restart.layout)
        stream._tables, stream._restart, stream.position = restart.tables, restart, restart.position
        return stream

    def held_back(self) -> str | None:
        """Why no checkpoint can be taken after the clusters fed so far (None: one can)."""
        if self._engine is None or self.prefix:
            return "the image's first clusters are still being read"
        return self._engine.held_back()

    def sync(self) -> int:
        """Wait for inflated clusters, make the disk durable; returns how far guest data reaches."""
        assert self._engine is not None and self._output is not None
        self._engine.drain()
        return self._output.sync()

    def restart_state(self) -> bytes:
        """What a record keeps for a restart here: where the metadata it will read again is."""
        assert self._engine is not None
        partial = [(start, self.position) for start in self._engine.partial_starts()]
        spooled = self._engine.spooled()
        ranges = metadata_ranges(self.layout, self._tables, self.position, partial, spooled)
        return RestartRecord(list(ranges), spooled).encode()

    @property
    def prefix_end(self) -> int:
        """Where `prepare` stops reading: the end of the cluster holding the L1 table's end."""
        cs = self.layout.cluster_size
        return max(-(-self.layout.l1_end // cs), 1) * cs

    @property
    def tables(self) -> list[tuple[int, int]]:
        """(L1 index, host offset) of every L2 table, from the L1 table."""
        return self._tables

    def restart_pieces(self) -> list[tuple[int, bytes]]:
        """The bytes of the ranges `restart_state` names that are not the image's tables: the first
        parts of compressed clusters cut at `position`, and the spooled clusters (start, bytes)."""
        assert self._engine is not None
        return self._engine.partial_heads() + self._engine.spooled_data()

    def prepare(self) -> None:
        """Read the image up to the end of its L1 table and decide whether one pass can convert it."""
        layout = self.layout
        if layout.l1_end > PREFIX_LIMIT:
            raise Decline(f"its L1 table is at byte {layout.l1_offset}, after the first {PREFIX_LIMIT >> 20} MiB "
                          f"of the image (metadata written after the data, as in a resized image), so it "
                          f"needs random access")
        cs = layout.cluster_size
        self.prefix = read_up_to(self._reader, self.prefix_end)
        if len(self.prefix) < layout.l1_end:
            raise corrupt(f"the stream ended at byte {len(self.prefix)}, inside the L1 table")
        self._tables = parse_l1(self.prefix[layout.l1_offset:layout.l1_end], layout)
        if len(self._tables) * cs > TABLE_MEMORY_LIMIT:
            raise Decline(f"its {len(self._tables)} L2 tables take {len(self._tables) * cs >> 20} MiB, more than "
                          f"the {TABLE_MEMORY_LIMIT >> 20} MiB a single pass may hold, so it needs random access")

    def run(self, output: DiskOutput, spool_dir: Path | None, *, spool_memory: int = MEMORY_LIMIT,
            hook: ClusterHook | None = None) -> int:
        """Convert the rest of the stream; returns the virtual size. `spool_dir` is scratch space, if any."""
        layout = self.layout
        cs = layout.cluster_size
        spool = Spool(cs, spool_dir, memory_limit=spool_memory)
        restart = self._restart
        engine = Engine(layout, self._tables, output, spool, restart.rebuilt if restart is not None else None)
        self._engine, self._output = engine, output
        if restart is None:
            output.prepare()  # a restart continues the disk the earlier attempt prepared
        if hook is not None:
            hook.attach(output)
        try:
            end = self._pump(engine, cs, hook)
            engine.finish(end)
            output.finish()
        finally:
            engine.inflater.close()
            output.close()
            self.spilled = spool.spilled
            spool.clear()
        return layout.virtual_size

    def _pump(self, engine: Engine, cs: int, hook: ClusterHook | None) -> int:
        """Feed the prefix, then the rest of the stream, a cluster at a time; returns where it stopped."""
        prefix, self.prefix = memoryview(self.prefix), b""
        position = self.position
        cluster = position // cs
        while position < len(prefix):
            piece = prefix[position:position + cs]
            engine.feed(cluster, piece)
            if hook is not None:
                hook.passed(self, position, piece)
            cluster, position = cluster + 1, position + len(piece)
            if len(piece) < cs:
                return position
        self.position = position
        while not engine.done:
            data = read_up_to(self._reader, cs) if hook is None else self._read_cluster(cs, hook)
            if data:
                engine.feed(cluster, data)
                if hook is not None:
                    hook.passed(self, position, data)
            cluster, position = cluster + 1, position + len(data)
            self.position = position
            if len(data) < cs:
                break
            if hook is not None:
                hook(self)
        return position

    def _read_cluster(self, cs: int, hook: ClusterHook) -> bytes:
        """One host cluster (less at the end of the stream), telling `hook` after each incomplete read."""
        parts: list[bytes] = []
        got = 0
        while got < cs:
            piece = self._reader.read(cs - got)
            if not piece:
                break
            parts.append(piece)
            got += len(piece)
            if got < cs:
                hook.inside(self, parts)
        return parts[0] if len(parts) == 1 else b"".join(parts)
