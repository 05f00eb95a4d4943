"""Server-side TLS for the clone's upgraded data connection (`importer.uploadserver.clonestream`), run
through memory BIOs on a blocking socket instead of `SSLContext.wrap_socket`.

Why: a TLS socket reads the kernel once for each record's 5-byte header and once more for its body,
two system calls per 16 KiB of data (about 130,000 per GiB), and that was a third of the upload
server's CPU for a clone. Here the socket is read in large pieces (whatever has arrived, up to
`RAW_READ` bytes: dozens of records per system call) into the incoming BIO, and OpenSSL decrypts from
memory record by record straight into the caller's buffer. Same mutual-TLS handshake, same context,
same client certificate check (`getpeercert`); what the server writes (answers, session tickets) goes
out through the outgoing BIO at once. The object looks like the socket it replaces to `clonestream`
(recv, recv_into, sendall, shutdown, close).
"""

from __future__ import annotations

import socket
import ssl
from typing import Any, Protocol

RAW_READ = 1 << 20


class Channel(Protocol):
    """What `clonestream` needs of a connection: a plain socket is one, so is `TlsChannel`."""

    def recv(self, size: int, /) -> bytes: ...

    def recv_into(self, buffer: memoryview, /) -> int: ...

    def sendall(self, data: bytes, /) -> None: ...

    def shutdown(self, how: int, /) -> None: ...

    def close(self) -> None: ...


class TlsChannel:
    """The server end of a TLS connection over `raw` (blocking, with its timeout): `handshake` first."""

    def __init__(self, raw: socket.socket, context: ssl.SSLContext) -> None:
        self.raw = raw
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._tls = context.wrap_bio(self._incoming, self._outgoing, server_side=True)
        self._buffer = memoryview(bytearray(RAW_READ))

    def handshake(self) -> None:
        """The mutual-TLS handshake; `ssl.SSLError` when it fails, OSError when the peer goes away."""
        while True:
            try:
                self._tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                if not self._fill():
                    raise ConnectionResetError("the client closed the connection during the TLS handshake") from None
        self._flush()

    def getpeercert(self) -> Any:
        return self._tls.getpeercert()

    def recv_into(self, buffer: memoryview, /) -> int:
        """Decrypted bytes into `buffer` (at most one record's worth); 0 once the client has gone."""
        while True:
            try:
                got: Any = self._tls.read(len(buffer), buffer)  # with a buffer: a count (typeshed says bytes)
                return int(got)
            except ssl.SSLWantReadError:
                if not self._fill():
                    return 0
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return 0

    def recv(self, size: int, /) -> bytes:
        while True:
            try:
                return self._tls.read(size)
            except ssl.SSLWantReadError:
                if not self._fill():
                    return b""
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return b""

    def sendall(self, data: bytes, /) -> None:
        self._tls.write(data)
        self._flush()

    def shutdown(self, how: int, /) -> None:
        self.raw.shutdown(how)

    def close(self) -> None:
        self.raw.close()

    def _fill(self) -> bool:
        """Read what the kernel holds (one system call); False at the end of the connection. Whatever
        OpenSSL has to say first (handshake messages, a key update's answer) is sent before waiting."""
        self._flush()
        n = self.raw.recv_into(self._buffer)
        if not n:
            self._incoming.write_eof()
            return False
        self._incoming.write(self._buffer[:n])
        return True

    def _flush(self) -> None:
        if self._outgoing.pending:
            self.raw.sendall(self._outgoing.read())
