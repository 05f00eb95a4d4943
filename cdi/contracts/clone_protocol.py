"""The host-assisted clone's cross-process contract, written once: the clone source pod's environment
(upstream's names), and the wire protocol between the cloner (`importer.cloner`, in the source pod) and
the upload server in clone-target mode (`importer.uploadserver.clonetarget`, in the target's upload pod).
The control plane (`cdi.controllers.hostclone`) builds the source pod from the names below.

Upstream streams the whole volume as one tar or raw body to `/v1beta1/upload`: every byte is read and
sent, holes included, and a dropped connection starts over. Ours sends only data, in order:

    POST /v1beta1/clone/begin      {"virtualSize": N, "sourceVolumeMode": "Filesystem"|"Block",
                                    "contentType": "kubevirt", "digest": "sha256",
                                    "digests": ["blake3", "sha256"]}
                                   → 200 State. Idempotent: the same parameters join the clone in
                                   progress (that is how a restarted cloner resumes); other
                                   parameters while one is in progress → 409. A target too small
                                   for N, or archive content → 400 with a reason.
                                   "digests" (added later, optional) offers digest algorithms in
                                   the cloner's order of preference; the server takes the first it
                                   knows and names it in State.digest. Without it (a cloner of an
                                   earlier build) "digest" is the algorithm, and it must be sha256.
                                   A server of an earlier build ignores "digests" and answers
                                   without State.digest: the cloner then uses sha256. So "digest"
                                   stays "sha256" on the wire whatever is offered.
    PUT  /v1beta1/clone/extent?offset=O
                                   body = the bytes at absolute offset O of the image (Content-Length
                                   required, at most MAX_EXTENT). Extents arrive in ascending order;
                                   the gap before one is a hole (never sent: the target leaves it
                                   sparse, or zeroes it cheaply on a Block device).
                                   O ≥ next: written, folded into the digest, next = O + length → 200
                                   O + length ≤ next: already acknowledged, ignored → 200 (idempotent)
                                   otherwise (overlaps next) → 409. A body cut short changes nothing.
    GET  /v1beta1/clone/state      → 200 State (404 before begin)
    POST /v1beta1/clone/finish     {"digest": "<hex>"} → 200 once the digest matched and the disk is
                                   committed (sized, preallocated, durable); 400 + reason on mismatch
                                   (the server then forgets the clone: the next begin starts over).

    POST /v1beta1/clone/upgrade    (optional, added later; Connection: Upgrade, Upgrade: cdi-clone-tls,
                                   empty body) → 101: the connection leaves the HTTP server and, after
                                   a fresh mutual-TLS handshake on the bare TCP connection, carries
                                   only extent PUTs (same semantics, answered in order) until either
                                   side closes it. Any other answer (an older server's 404): keep
                                   using the ordinary connection. It exists for speed: the server
                                   reads the upgraded connection on a blocking thread with large
                                   reads instead of through its event loop's TLS.

    State = {"virtualSize": N, "next": <offset after the last acknowledged extent>,
             "received": <data bytes acknowledged>, "done": bool, "digest": <the algorithm in use>}

Resume: after any failure the cloner asks for the state and continues with the first extent at or
after `next`; extent boundaries are a pure function of the source layout (`EXTENT_ALIGN`), so the
extents it produces from `next` are exactly those it would have produced from zero.

Digest (end to end, covering data *and* layout): H over a domain string, the virtual size as 8 bytes
big-endian, then for each extent in order: offset (8 bytes BE), length (8 bytes BE) and the H of its
data (32 bytes). A lost, duplicated, misplaced or corrupted extent, or a different size, changes it.
H is sha256 with the domain `b"cdi-clone-v1"` (every build), or BLAKE3 with `b"cdi-clone-blake3-v1"`
(negotiated, see begin): BLAKE3 hashes about four times as fast as sha256 with SHA-NI on one core,
and hashing was the clone's largest CPU cost on both sides. Both are cryptographic. A build without
the `blake3` package installed simply does not offer or accept it.

Only the clone's client certificate (CN = CLIENT_NAME, upstream's `<srcNs>/<srcPvc>-<tgtNs>/<tgtPvc>`)
may call any of these.
"""

from __future__ import annotations

import enum
import hashlib
import json
import struct
from dataclasses import dataclass
from typing import Any, Final, Protocol

try:
    import blake3
except ImportError:  # an environment without the package: sha256 only, as before
    blake3 = None  # type: ignore[assignment]

from cdi.contracts.upload_protocol import fnv32a

# --- The clone source pod (upstream names).
CONTAINER_NAME: Final = "cdi-clone-source"
CLIENT_KEY: Final = "CLIENT_KEY"  # PEM contents, from the pod's Secret
CLIENT_CERT: Final = "CLIENT_CERT"  # PEM contents, from the pod's Secret
SERVER_CA_CERT: Final = "SERVER_CA_CERT"  # PEM contents
UPLOAD_URL: Final = "UPLOAD_URL"  # the upload server's base URL (ours: any path after it is ignored)
OWNER_UID: Final = "OWNER_UID"
PREALLOCATION: Final = "PREALLOCATION"
VOLUME_MODE: Final = "VOLUME_MODE"  # "filesystem" or "block", as upstream writes it
MOUNT_POINT: Final = "MOUNT_POINT"
# Ours: the name the upload server's certificate carries when UPLOAD_URL addresses the pod by IP (the
# embedded runtime has no Service DNS), and extent detection switched off (the benchmark's full copy).
SERVER_NAME: Final = "CDI_CLONE_SERVER_NAME"
DETECT_ZEROES: Final = "CDI_CLONE_DETECT_ZEROES"  # "false": send every byte (upstream-style)

SOURCE_MOUNT: Final = "/var/run/cdi/clone/source"
SOURCE_DEVICE: Final = "/dev/cdi-block-volume"
SECRET_KEY_FIELD: Final = "tls.key"
SECRET_CERT_FIELD: Final = "tls.crt"
METRICS_PORT: Final = 8443
CLONE_COMPLETE: Final = "Clone Complete"

# --- The wire protocol.
BEGIN_PATH: Final = "/v1beta1/clone/begin"
EXTENT_PATH: Final = "/v1beta1/clone/extent"
STATE_PATH: Final = "/v1beta1/clone/state"
FINISH_PATH: Final = "/v1beta1/clone/finish"
UPGRADE_PATH: Final = "/v1beta1/clone/upgrade"
UPGRADE_TOKEN: Final = "cdi-clone-tls"
OFFSET_PARAM: Final = "offset"
EXTENT_ALIGN: Final = 8 << 20  # extents never cross a multiple of this (and are at most this long)
ZERO_BLOCK: Final = 64 << 10  # zero detection granularity, aligned to absolute offsets
MAX_EXTENT: Final = EXTENT_ALIGN
DIGEST_ALGORITHM: Final = "sha256"  # what every build knows; the begin request's "digest" field
BLAKE3: Final = "blake3"
# Ours, in order of preference: what the cloner offers and the server accepts.
DIGESTS: Final[tuple[str, ...]] = (BLAKE3, DIGEST_ALGORITHM) if blake3 is not None else (DIGEST_ALGORITHM,)
_DOMAINS: Final = {DIGEST_ALGORITHM: b"cdi-clone-v1", BLAKE3: b"cdi-clone-blake3-v1"}
_U64 = struct.Struct(">Q")


class VolumeMode(enum.StrEnum):
    FILESYSTEM = "Filesystem"
    BLOCK = "Block"


CN_MAX = 64  # an X.509 commonName holds at most 64 characters (RFC 5280 ub-common-name)


def client_name(source_namespace: str, source_pvc: str, target_namespace: str, target_pvc: str) -> str:
    """Upstream's `uploadClientName`: the CN the clone's client certificate carries, and the CLIENT_NAME
    the upload server accepts. Upstream's Go writes longer names into the CN regardless; a name longer
    than a commonName may be (a clone populator's `tmp-pvc-<uid>` target makes one) keeps its first 55
    characters and gains an FNV-32a hash of the whole, so it stays unique and the same on both sides."""
    name = f"{source_namespace}/{source_pvc}-{target_namespace}/{target_pvc}"
    if len(name) <= CN_MAX:
        return name
    return f"{name[:CN_MAX - 9]}-{fnv32a(name)}"


def source_pod_name(target_uid: str) -> str:
    return f"{target_uid}-source-pod"


class DataHash(Protocol):
    """An extent's data hash as it streams (hashlib's and blake3's objects both are one)."""

    def update(self, data: memoryview | bytes, /) -> object: ...

    def digest(self) -> bytes: ...


def data_hash(algorithm: str) -> DataHash:
    """A fresh hash of one extent's data; `ValueError` for an algorithm this build does not know."""
    if algorithm == DIGEST_ALGORITHM:
        return hashlib.sha256()
    if algorithm == BLAKE3 and blake3 is not None:
        return blake3.blake3()
    raise ValueError(f"digest {algorithm!r} is not supported")


@dataclass(frozen=True)
class Begin:
    virtual_size: int
    source_volume_mode: VolumeMode
    content_type: str = "kubevirt"
    digest: str = DIGEST_ALGORITHM
    offers: tuple[str, ...] = ()  # "digests": empty from a cloner of an earlier build

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"virtualSize": self.virtual_size, "sourceVolumeMode": self.source_volume_mode.value,
                               "contentType": self.content_type, "digest": self.digest}
        if self.offers:
            doc["digests"] = list(self.offers)
        return doc

    @property
    def acceptable(self) -> tuple[str, ...]:
        """The algorithms the cloner can use, in its order of preference."""
        return self.offers or (self.digest,)

    def negotiate(self, known: tuple[str, ...] = DIGESTS) -> str:
        """The server's choice: the cloner's first algorithm it knows; `ValueError` when none."""
        for algorithm in self.acceptable:
            if algorithm in known:
                return algorithm
        raise ValueError(f"none of the digests {', '.join(self.acceptable)} is supported "
                         f"(this server knows {', '.join(known)})")

    def joins(self, other: Begin, algorithm: str) -> bool:
        """Whether this request rejoins a clone begun by `other` and using `algorithm`."""
        return ((self.virtual_size, self.source_volume_mode, self.content_type) ==
                (other.virtual_size, other.source_volume_mode, other.content_type) and algorithm in self.acceptable)

    @classmethod
    def parse(cls, doc: Any) -> Begin:
        """`ValueError` when the document is not a begin request."""
        if not isinstance(doc, dict):
            raise ValueError("a clone begin request is a JSON object")
        size = doc.get("virtualSize")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ValueError(f"virtualSize must be a non-negative integer, got {size!r}")
        offers = doc.get("digests", [])
        if not isinstance(offers, list) or not all(isinstance(offer, str) for offer in offers):
            raise ValueError(f"digests must be a list of algorithm names, got {offers!r}")
        return cls(size, VolumeMode(str(doc.get("sourceVolumeMode", "Filesystem"))),
                   str(doc.get("contentType", "kubevirt")), str(doc.get("digest", DIGEST_ALGORITHM)), tuple(offers))


@dataclass(frozen=True)
class State:
    virtual_size: int
    next: int
    received: int
    done: bool = False
    digest: str = DIGEST_ALGORITHM  # absent from an earlier build's answer: it knows only sha256

    def to_json(self) -> dict[str, Any]:
        return {"virtualSize": self.virtual_size, "next": self.next, "received": self.received, "done": self.done,
                "digest": self.digest}

    @classmethod
    def parse(cls, text: str) -> State:
        doc = json.loads(text)
        return cls(int(doc["virtualSize"]), int(doc["next"]), int(doc["received"]), bool(doc.get("done", False)),
                   str(doc.get("digest", DIGEST_ALGORITHM)))


class LayoutDigest:
    """The end-to-end digest: both sides feed it the extents in order (`add` with the data's own hash,
    `data_hash(algorithm)`, so the data can be hashed while it streams) and compare `hexdigest` at the
    end. The sha256 form is byte for byte the one every earlier build computes."""

    def __init__(self, virtual_size: int, algorithm: str = DIGEST_ALGORITHM) -> None:
        self.algorithm = algorithm
        self._hash = data_hash(algorithm)
        self._hash.update(_DOMAINS[algorithm] + _U64.pack(virtual_size))

    def add(self, offset: int, length: int, data_digest: bytes) -> None:
        self._hash.update(_U64.pack(offset) + _U64.pack(length) + data_digest)

    def hexdigest(self) -> str:
        return self._hash.digest().hex()
