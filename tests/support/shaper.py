"""A throttling, counting TCP relay on loopback, run on its own threads so that tests that run the
importer as a blocking subprocess can sit it in front of nginx, moto or the GCS emulator.

Each connection gets its own upstream connection; bytes from the server to the client are sent at
most `rate` bytes per second (so a test can stop the importer part-way through a small image) and
counted (`downstream`: what the importer fetched in total, across every attempt). Used by the resume
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
            upstream = socket.create_connection(self._upstream)
            with self._lock:
                self.connections += 1
                self._sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, downstream: bool) -> None:
        started, sent = time.monotonic(), 0
        try:
            while data := source.recv(PIECE):
                sink.sendall(data)
                if not downstream:
                    continue
                sent += len(data)
                with self._lock:
                    self.downstream += len(data)
                if self.rate:
                    ahead = sent / self.rate - (time.monotonic() - started)
                    if ahead > 0:
                        time.sleep(ahead)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
