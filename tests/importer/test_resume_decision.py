"""Pure tests of the resume machinery: the checkpoint record's format and its atomic store, the
serialisable hash state, when a record falls due, the resume decision as a table of observed →
decision, and how the decision reaches the user (termination message → controller event)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
from dataclasses import replace
from pathlib import Path

import pytest

from cdi.contracts.termination import TerminationMessage
from cdi.controllers.workerstate import observe_importer, resume_event
from importer import hashstate
from importer.archivestate import ArchiveState
from importer.checkpoint import Checkpoint, CheckpointCorrupt, Checkpointer, CheckpointStore, SourceIdentity
from importer.checkpointdevice import SLOT, DeviceTailStore
from importer.compressedqcow2 import CompressedRestart, converter_view
from importer.gzipblocks import GzipBlocks
from importer.qcow2stream.restart import RestartRecord
from importer.resume import Decision, Observed, Outcome, confirm, decide, describe, not_resumable_reason

IDENTITY = SourceIdentity("http://example.test/disk.img", etag='"5f-abc"', last_modified="Tue, 01 Dec 2026", size=95)
RECORD = Checkpoint(IDENTITY, "raw", "xz", checksum="sha256:" + "0" * 64, wire_offset=64, target_offset=128,
                    carry=b"\x1f\x8b\x08", decoder_state=b"\xfd7zXZ\x00\x00\x04", hash_state=b"\x01" * 112,
                    hash_library="OpenSSL 3.0.19 27 Jan 2026")


def test_record_round_trips_through_json() -> None:
    assert Checkpoint.from_json(RECORD.to_json()) == RECORD
    assert Checkpoint.from_json(replace(RECORD, hash_state=None, carry=b"").to_json()).hash_state is None


@pytest.mark.parametrize("text", [
    "", "{", "[]", '{"version": 2}',
    RECORD.to_json().replace('"wire_offset":64', '"wire_offset":-1'),
    RECORD.to_json().replace('"carry":"H4sI"', '"carry":"not base64!"'),
    RECORD.to_json().replace('"format":"raw"', '"format":"raw","extra":1'),
])
def test_unreadable_records_are_refused(text: str) -> None:
    with pytest.raises(CheckpointCorrupt):
        Checkpoint.from_json(text)


def test_store_replaces_the_record_atomically_and_leaves_no_temporary(tmp_path: Path) -> None:
    store = CheckpointStore.beside(tmp_path)
    assert store.load() is None
    store.save(RECORD)
    store.save(replace(RECORD, wire_offset=96))
    loaded = store.load()
    assert loaded is not None and loaded.wire_offset == 96
    assert sorted(p.name for p in tmp_path.iterdir()) == [".disk.img.checkpoint"]
    store.clear()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("algorithm", ["md5", "sha1", "sha256", "sha512"])
def test_hash_state_saved_part_way_continues_to_hashlibs_digest(algorithm: str) -> None:
    data = os.urandom(300_001)
    first = hashstate.ResumableHash(algorithm)
    first.update(data[:123_457])
    state = first.state()
    second = hashstate.ResumableHash.restore(algorithm, state, hashstate.library_version())
    second.update(data[123_457:])
    assert second.hexdigest() == hashlib.new(algorithm, data).hexdigest()
    assert first.hexdigest() == hashlib.new(algorithm, data[:123_457]).hexdigest()  # hexdigest does not consume


def test_hash_state_from_another_library_is_refused() -> None:
    state = hashstate.ResumableHash("sha256").state()
    with pytest.raises(hashstate.StateMismatch):
        hashstate.ResumableHash.restore("sha256", state, "OpenSSL 0.9.8 (long gone)")
    with pytest.raises(hashstate.StateMismatch):
        hashstate.ResumableHash.restore("sha256", state[:-1], hashstate.library_version())


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_record_falls_due_by_bytes_or_by_time(tmp_path: Path) -> None:
    clock = FakeClock()
    checkpointer = Checkpointer(CheckpointStore.beside(tmp_path), every_bytes=1000, every_seconds=5, clock=clock)
    assert not checkpointer.due(10_000)  # nothing begun
    checkpointer.begin(replace(RECORD, wire_offset=0))
    assert [checkpointer.due(n) for n in (0, 999, 1000)] == [False, False, True]
    clock.now += 5
    assert checkpointer.due(1) and not checkpointer.due(0)  # time alone, but only with progress
    checkpointer.save(1, 2, b"", None, started=clock.now)
    assert not checkpointer.due(2) and checkpointer.saved == 1


def test_a_record_that_cannot_resume_never_falls_due(tmp_path: Path) -> None:
    checkpointer = Checkpointer(CheckpointStore.beside(tmp_path), every_bytes=1, every_seconds=1)
    checkpointer.begin(replace(RECORD, wire_offset=0, not_resumable="qcow2 says no"))
    assert not checkpointer.active and not checkpointer.due(1 << 30)
    assert CheckpointStore.beside(tmp_path).load() == replace(RECORD, wire_offset=0, not_resumable="qcow2 says no")


LIB = RECORD.hash_library
SEEN = Observed(RECORD, None, True, RECORD.checksum, "http", True, LIB)

DECISIONS = [
    ("nothing left", replace(SEEN, record=None, partial_exists=False), Outcome.FRESH, None),
    ("killed before any record", replace(SEEN, record=None), Outcome.STARTED_OVER, "before it wrote a checkpoint"),
    ("unreadable record", replace(SEEN, record=None, unreadable="bad json"), Outcome.STARTED_OVER,
     "could not be read (bad json)"),
    ("shape cannot resume", replace(SEEN, record=replace(RECORD, not_resumable="qcow2 is converted")),
     Outcome.STARTED_OVER, "qcow2 is converted"),
    ("killed before the first interval", replace(SEEN, record=replace(RECORD, wire_offset=0)), Outcome.STARTED_OVER,
     "before its first checkpoint"),
    ("single-block xz", replace(SEEN, record=replace(RECORD, wire_offset=0)), Outcome.STARTED_OVER,
     "single-threaded xz writes a single block"),
    ("single-frame zstd", replace(SEEN, record=replace(RECORD, wire_offset=0, compression="zst")),
     Outcome.STARTED_OVER, "one frame per file"),
    ("gzip inside a member, unusable state", replace(SEEN, record=replace(RECORD, compression="gz")),
     Outcome.STARTED_OVER, "gzip state is unusable"),
    ("gzip between members", replace(SEEN, record=replace(RECORD, compression="gz", decoder_state=b"")),
     Outcome.RESUMED, None),
    ("partial disk gone", replace(SEEN, partial_exists=False), Outcome.STARTED_OVER, "partly written disk"),
    ("checksum changed", replace(SEEN, checksum="md5:" + "0" * 32), Outcome.STARTED_OVER, "checksum to verify"),
    ("no hash state", replace(SEEN, record=replace(RECORD, hash_state=None)), Outcome.STARTED_OVER, "hash state"),
    ("another libcrypto", replace(SEEN, hash_library="OpenSSL 3.5"), Outcome.STARTED_OVER, "OpenSSL 3.5"),
    ("source without ranges", replace(SEEN, source_kind="registry", source_resumable=False), Outcome.STARTED_OVER,
     "registry source cannot continue"),
    ("all well", SEEN, Outcome.RESUMED, None),
    ("archive mark", replace(SEEN, record=replace(RECORD, archive_state=ArchiveState(100, tar_offset=512).to_json())),
     Outcome.RESUMED, None),
    ("archive mark unreadable", replace(SEEN, record=replace(RECORD, archive_state='{"available": -1}')),
     Outcome.STARTED_OVER, "archive mark could not be read"),
    ("no checksum, no state needed", replace(SEEN, checksum="", record=replace(RECORD, checksum="", hash_state=None)),
     Outcome.RESUMED, None),
]


@pytest.mark.parametrize(("case", "seen", "outcome", "why"), DECISIONS, ids=[d[0] for d in DECISIONS])
def test_resume_decision(case: str, seen: Observed, outcome: Outcome, why: str | None) -> None:
    decision = decide(seen)
    assert decision.outcome is outcome
    if why is None:
        assert decision.reason is None
    else:
        assert decision.reason is not None and why in decision.reason
    assert (decision.record is not None) == (outcome is Outcome.RESUMED)


CONFIRMATIONS = [
    ("same source, ranged", IDENTITY, 64, None),
    ("no validators seen", None, 64, "did not identify itself"),
    ("new etag", replace(IDENTITY, etag='"60-def"'), 0, "etag changed"),
    ("new size", replace(IDENTITY, size=96), 64, "size changed"),
    ("range ignored", IDENTITY, 0, "does not honour range requests"),
    ("unrecorded field appears", replace(IDENTITY, version="7"), 64, None),
]


@pytest.mark.parametrize(("case", "seen", "start", "why"), CONFIRMATIONS, ids=[c[0] for c in CONFIRMATIONS])
def test_confirming_the_ranged_answer(case: str, seen: SourceIdentity | None, start: int, why: str | None) -> None:
    result = confirm(RECORD, seen, start)
    assert result is None if why is None else (result is not None and why in result)


@pytest.mark.parametrize(("shape", "why"), [
    (("raw", (), False, IDENTITY, True), None),
    (("iso", ("xz",), False, IDENTITY, True), None),
    (("raw", ("gz",), False, IDENTITY, True), None),
    (("qcow2", (), False, IDENTITY, True), None),
    (("qcow2", ("gz",), False, IDENTITY, True), "whose pod has no scratch volume"),
    (("qcow2", (), False, SourceIdentity("upload:resumable", size=9, version="upload:9"), True), "qcow2 upload"),
    (("raw", ("zst",), False, IDENTITY, True), None),
    (("raw", ("gz", "xz"), False, IDENTITY, True), "more than once"),
    (("tar", (), True, IDENTITY, True), None),
    (("tar", ("gz",), True, IDENTITY, True), None),
    (("tar", ("zst",), True, SourceIdentity("upload-archive:resumable", size=9, version="upload-archive:9"), True),
     None),
    (("tar", ("gz", "xz"), True, IDENTITY, True), "archives compressed more than once"),
    (("tar", (), True, IDENTITY, False), "cannot continue"),
    (("tar", (), True, SourceIdentity("u", size=5), True), "no ETag"),
    (("raw", (), False, SourceIdentity("u", size=5), True), "no ETag"),
    (("raw", (), False, None, True), "honours range requests"),
    (("raw", (), False, IDENTITY, False), "cannot continue"),
    (("vmdk", (), False, IDENTITY, True), "scratch space"),
])
def test_which_shapes_are_checkpointed(shape: tuple[str, tuple[str, ...], bool, SourceIdentity, bool],
                                       why: str | None) -> None:
    result = not_resumable_reason(*shape)
    assert result is None if why is None else (result is not None and why in result)


@pytest.mark.parametrize(("compression", "ranges_kept", "ranged_reads", "why"), [
    (("gz",), True, True, None),
    (("xz",), True, True, None),
    (("zst",), True, True, None),
    (("gz",), False, True, "compressed with gz is not checkpointed onto a Block volume whose pod has no scratch"),
    (("gz", "xz"), True, True, "more than once"),
    (("gz",), True, False, "compressed qcow2 disk inside a registry image"),
])
def test_a_compressed_qcow2_is_checkpointed_where_its_tables_can_be_kept(
        compression: tuple[str, ...], ranges_kept: bool, ranged_reads: bool, why: str | None) -> None:
    result = not_resumable_reason("qcow2", compression, False, IDENTITY, True, ranges_kept=ranges_kept,
                                  ranged_reads=ranged_reads)
    assert result is None if why is None else (result is not None and why in result)


def _gzip_state() -> tuple[bytes, int]:
    """A gzip decoder's state inside a member, and the decoded offset there."""
    blocks = GzipBlocks(io.BytesIO(gzip.compress(bytes(range(256)) * 4096 + os.urandom(1 << 20), 1)))
    decoded = 0
    while True:
        decoded += len(blocks.read(64 << 10))
        if blocks.boundary() is not None and (state := blocks.state()):
            return state, decoded


def _compressed_qcow2(decoder: bytes, decoded: int, position: int) -> Checkpoint:
    qcow2 = RestartRecord([(0, 512)], []).encode()
    return replace(RECORD, format="qcow2", compression="gz",
                   decoder_state=CompressedRestart(decoder, decoded, position, qcow2).encode())


def test_the_decision_checks_a_compressed_qcow2_records_decoder_part() -> None:
    state, decoded = _gzip_state()
    resumed = decide(replace(SEEN, record=_compressed_qcow2(state, decoded, decoded + 4096)))
    assert resumed.outcome is Outcome.RESUMED
    assert decide(replace(SEEN, record=_compressed_qcow2(b"", 0, 65536))).outcome is Outcome.RESUMED
    further = decide(replace(SEEN, record=_compressed_qcow2(state, decoded - 1, decoded + 4096)))
    assert further.reason is not None and "more was decompressed than the disk holds" in further.reason
    record = _compressed_qcow2(state, decoded, decoded)
    torn = decide(replace(SEEN, record=replace(record, decoder_state=record.decoder_state[:-1] + b"?")))
    assert torn.reason is not None and "compressed qcow2 state is corrupt" in torn.reason


def test_the_converter_sees_a_compressed_qcow2_record_at_its_own_position() -> None:
    record = _compressed_qcow2(b"", 1000, 65536)
    view = converter_view(record)
    assert (view.wire_offset, view.carry, view.compression) == (65536, b"", None)
    assert RestartRecord.decode(view.decoder_state).ranges == [(0, 512)]
    assert CompressedRestart.decode(record.decoder_state).skip == 65536 - 1000
    assert converter_view(replace(record, compression=None)).decoder_state == record.decoder_state


def test_a_resumed_archive_says_how_many_members_were_extracted() -> None:
    mark = ArchiveState(100, members=7, tar_offset=512).to_json()
    said = describe(decide(replace(SEEN, record=replace(RECORD, archive_state=mark))))
    assert said.startswith("Resumed the import after a restart at source byte") and "7 archive members" in said


def test_the_decision_reaches_the_claim_as_an_event() -> None:
    resumed = Decision(Outcome.RESUMED, record=RECORD)
    message = TerminationMessage(message="Import Complete", resume_decision="Resumed",
                                 resume_message=describe(resumed))
    parsed = TerminationMessage.parse(message.to_json())
    assert parsed == message
    assert json.loads(message.to_json())["resumeDecision"] == "Resumed"
    assert resume_event(parsed) == (("Normal", "ImportResumed",
                                     "Resumed the import after a restart at source byte 64 of 95 "
                                     "(128 bytes of the disk were already written)"),)
    over = TerminationMessage(message="Import Complete", resume_decision="StartedOver",
                              resume_message=describe(Decision.over("the source changed")))
    assert resume_event(over) == (("Warning", "ImportStartedOver", "Started the import over: the source changed"),)
    assert resume_event(TerminationMessage(message="Import Complete")) == ()
    qcow2 = Decision(Outcome.RESUMED, record=replace(RECORD, format="qcow2", compression=None))
    assert describe(qcow2) == ("Resumed the import after a restart at source byte 64 of 95 (the disk's data "
                               "already reached byte 128)")


def _succeeded_importer(message: TerminationMessage) -> dict[str, object]:
    terminated = {"exitCode": 0, "reason": "Completed", "message": message.to_json()}
    return {"metadata": {"name": "importer-fedora"},
            "status": {"phase": "Succeeded", "containerStatuses": [{"name": "importer", "restartCount": 1,
                                                                      "state": {"terminated": terminated}}]}}


def test_the_controller_records_the_decision_beside_the_success_event() -> None:
    over = TerminationMessage(message="Import Complete", resume_decision="StartedOver",
                              resume_message="Started the import over: the source changed since the checkpoint")
    claim = {"metadata": {"name": "fedora", "namespace": "default", "annotations": {}}}
    seen = observe_importer(claim, _succeeded_importer(over))
    assert seen.complete
    assert seen.events == (("Warning", "ImportStartedOver", over.resume_message),
                           ("Normal", "ImportSucceeded", "Import Successful"))


def _device(tmp_path: Path, size: int = 8 << 20) -> Path:
    path = tmp_path / "device"
    path.write_bytes(b"\xee" * size)
    return path


def test_device_tail_store_keeps_the_newest_intact_slot(tmp_path: Path) -> None:
    device = _device(tmp_path)
    store = DeviceTailStore(device, 8 << 20)
    assert store.load() is None
    assert store.save(replace(RECORD, wire_offset=10)) and store.save(replace(RECORD, wire_offset=20))
    loaded = DeviceTailStore(device, 8 << 20).load()
    assert loaded is not None and loaded.wire_offset == 20
    with device.open("r+b") as f:  # a kill mid-write of the newest slot (sequence 2, slot 0): slot 1 holds
        f.seek(store.limit + 100)
        f.write(b"torn")
    loaded = DeviceTailStore(device, 8 << 20).load()
    assert loaded is not None and loaded.wire_offset == 10


def test_device_tail_store_stops_where_the_data_reaches_its_slots(tmp_path: Path) -> None:
    store = DeviceTailStore(_device(tmp_path), 8 << 20)
    assert not store.save(replace(RECORD, target_offset=store.limit + 1))
    assert store.load() is None
    assert not DeviceTailStore(_device(tmp_path, 1 << 20), 1 << 20).save(RECORD)  # too small to hold slots


def test_device_tail_store_clears_only_past_the_imported_disk(tmp_path: Path) -> None:
    device = _device(tmp_path)
    store = DeviceTailStore(device, 8 << 20)
    store.save(RECORD)
    store.save(RECORD)
    store.clear(data_end=store.limit + SLOT)  # the disk covers slot 0: it is image data now, left alone
    data = device.read_bytes()
    assert data[store.limit + SLOT:] == bytes(SLOT)
    assert data[store.limit:store.limit + 8] == b"PYCDICKP"


def test_a_checkpointer_whose_store_is_full_stops_asking_for_syncs(tmp_path: Path) -> None:
    store = DeviceTailStore(_device(tmp_path), 8 << 20)
    checkpointer = Checkpointer(store, every_bytes=1, every_seconds=60)
    checkpointer.begin(replace(RECORD, wire_offset=0, target_offset=0))
    checkpointer.save(5, store.limit + 1, b"", None, started=0.0)
    assert checkpointer.saved == 0 and not checkpointer.due(10)
