"""Incremental hashes whose state can be saved in a checkpoint and restored by a restarted importer,
so a user's checksum (spec.checksum, `IMPORTER_CHECKSUM`) stays end to end across a resume.

Why not hashlib: its objects cannot be serialised (only `copy()`d within one process), and a resumed
importer no longer has the source bytes it hashed before the kill (for a compressed or converted
image they are not on the target either). Why not a pure-Python SHA: ~100x slower than OpenSSL on a
disk image. So we call the same OpenSSL libcrypto that hashlib uses through its long-standing
low-level API (`SHA256_Init/Update/Final` and friends, public structs whose layout has not changed
in decades), whose context *is* the state: plain bytes we can copy out and back. The state is tied
to the library's version string, and a restarted importer with a different libcrypto refuses it
(the resume decision then starts over). Results are checked against hashlib when the module loads;
if libcrypto cannot be loaded or disagrees, `available()` is False and nothing is resumable with a
checksum. Used by `importer.transfer` (the wire meter) and `importer.checkpoint`.
"""

from __future__ import annotations

import ctypes
import hashlib
from dataclasses import dataclass
from functools import cache
from typing import Any

# name -> (libcrypto prefix, sizeof the context struct in <openssl/md5.h|sha.h>, digest size)
_ALGORITHMS = {"md5": ("MD5", 92, 16), "sha1": ("SHA1", 96, 20), "sha256": ("SHA256", 112, 32),
               "sha512": ("SHA512", 216, 64)}
_CONTEXT_NAMES = {"SHA1": "SHA"}  # SHA1_Init takes a SHA_CTX
# Room past the struct sizes above, so that a libcrypto whose context grew writes into our buffer rather than
# past it; the saved state would then be cut short, the self-test would fail, and resuming is turned off.
_SLACK = 512


@dataclass(frozen=True)
class _Functions:
    init: Any  # ctypes foreign functions
    update: Any
    final: Any


class _Library:
    def __init__(self, lib: ctypes.CDLL) -> None:
        version = lib.OpenSSL_version
        version.restype = ctypes.c_char_p
        version.argtypes = [ctypes.c_int]
        self.version: str = (version(0) or b"").decode()
        self.functions: dict[str, _Functions] = {}
        for name, (prefix, _, _) in _ALGORITHMS.items():
            init, update, final = (getattr(lib, f"{prefix}_{op}") for op in ("Init", "Update", "Final"))
            init.argtypes, init.restype = [ctypes.c_void_p], ctypes.c_int
            update.argtypes, update.restype = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t], ctypes.c_int
            final.argtypes, final.restype = [ctypes.c_char_p, ctypes.c_void_p], ctypes.c_int
            self.functions[name] = _Functions(init, update, final)


@cache
def _library() -> _Library | None:
    """The libcrypto hashlib is linked against, by its usual sonames first (already loaded, so this
    is cheap); `find_library` (which runs ldconfig, ~15 ms of importer start-up) only as a fallback."""
    for name in ("libcrypto.so.3", "libcrypto.so.1.1", None):
        if name is None:
            from ctypes.util import find_library  # imports shutil and tempfile: only when the names fail

            name = find_library("crypto")
            if name is None:
                break
        try:
            library = _Library(ctypes.CDLL(name))
        except (OSError, AttributeError):
            continue
        return library if _self_test(library) else None
    return None


def _self_test(library: _Library) -> bool:
    sample = bytes(range(256)) * 9
    for name in _ALGORITHMS:
        first = ResumableHash(name, library=library)
        first.update(sample[:1000])
        second = ResumableHash.restore(name, first.state(), library.version, library=library)
        second.update(sample[1000:])
        if second.hexdigest() != hashlib.new(name, sample).hexdigest():
            return False
    return True


def available() -> bool:
    return _library() is not None


def library_version() -> str:
    library = _library()
    return library.version if library is not None else ""


def supported(algorithm: str) -> bool:
    return algorithm in _ALGORITHMS and available()


class StateMismatch(ValueError):
    """A saved state that this process cannot continue (another libcrypto, another algorithm)."""


class ResumableHash:
    """hashlib's `update`/`hexdigest`, plus `state()` and `restore()`."""

    def __init__(self, algorithm: str, *, library: _Library | None = None) -> None:
        lib = library or _library()
        if lib is None or algorithm not in _ALGORITHMS:
            raise StateMismatch(f"no resumable implementation of {algorithm}")
        self.algorithm = algorithm
        self._lib = lib
        self._functions = lib.functions[algorithm]
        _, self._size, self._digest_size = _ALGORITHMS[algorithm]
        self._context = ctypes.create_string_buffer(self._size + _SLACK)
        self._functions.init(self._context)

    @classmethod
    def restore(cls, algorithm: str, state: bytes, version: str, *,
                library: _Library | None = None) -> ResumableHash:
        hasher = cls(algorithm, library=library)
        if version != hasher._lib.version:
            raise StateMismatch(f"the hash state was saved by {version or 'an unknown library'}, this importer has "
                                f"{hasher._lib.version}")
        if len(state) != hasher._size:
            raise StateMismatch(f"a {algorithm} state is {hasher._size} bytes, not {len(state)}")
        ctypes.memmove(hasher._context, state, len(state))
        return hasher

    def update(self, data: bytes, /) -> None:
        self._functions.update(self._context, data, len(data))

    def state(self) -> bytes:
        return self._context.raw[:self._size]

    def hexdigest(self) -> str:
        scratch = ctypes.create_string_buffer(self._context.raw, len(self._context))  # Final consumes a context
        out = ctypes.create_string_buffer(self._digest_size)
        self._functions.final(out, scratch)
        return out.raw.hex()
