"""A throttling, counting TCP relay on loopback, run on its own threads so that tests that run the
importer as a blocking subprocess can sit it in front of nginx, moto or the GCS emulator.

Each connection gets its own upstream connection; bytes from the server to the client are sent at
most `rate` bytes per second (so a test can stop the importer part-way through a small image) and
counted (`downstream`: what the importer fetched in total, across every attempt). `cut_after` drops
the next connection abruptly once it has carried that many bytes to the client (a flaky link);
`hold_at` stops sending to clients once that many bytes went down in total, until it is cleared (a
test stops the importer at an exact byte, lets it consume what it got, then kills it). Used by the resume
tests (`tests/importer/test_resume_kill.py`) and the resume benchmark.
"""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType

PIECE = 64 << 10


class ShapedRelay:
    def __init__(self, upstream_host: str, upstream_port: int, *, rate: float | None = None) -> None:
        self._upstream = (upstream_host, upstream_port)
        self.rate = rate
        self.cut_after: int | None = None
        self.hold_at: int | None = None
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self.downstream = 0
        self.connections = 0
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> ShapedRelay:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()

    def reset(self) -> None:
        with self._lock:
            self.downstream = 0
            self.connections = 0

    def close(self) -> None:
        self._closed.set()
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                sock.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self._upstream)
            except OSError:  # the server refused: the client sees its connection closed, as through a proxy
                client.close()
                continue
            with self._lock:
                self.connections += 1
                self._sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _room(self, wanted: int) -> int:
        """How much may go down now (waits while the relay is held)."""
        while not self._closed.is_set():
            hold = self.hold_at
            with self._lock:
                room = wanted if hold is None else min(wanted, hold - self.downstream)
            if room > 0:
                return room
            time.sleep(0.005)
        raise OSError("relay closed")

    def _pump(self, source: socket.socket, sink: socket.socket, downstream: bool) -> None:
        started, sent = time.monotonic(), 0
        cut, self.cut_after = (self.cut_after, None) if downstream else (None, self.cut_after)
        try:
            while data := source.recv(PIECE):
                if cut is not None and sent + len(data) > cut:
                    break
                if not downstream:
                    sink.sendall(data)
                    continue
                while data:
                    piece = data[:self._room(len(data))]
                    sink.sendall(piece)
                    data = data[len(piece):]
                    sent += len(piece)
                    with self._lock:
                        self.downstream += len(piece)
                if self.rate:
                    ahead = sent / self.rate - (time.monotonic() - started)
                    if ahead > 0:
                        time.sleep(ahead)
        except OSError:
            pass
        finally:
            # Shut down and close both sides: a socket only shut down for reading is not closed, and a
            # single-threaded server (the GCS emulator) writing into it would wait forever.
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()
