"""The benchmark's upstream-style host-assisted clone: every byte of the source read and sent over mutual
TLS in one streaming POST (as upstream's clone source pod streams the volume to `/v1beta1/upload`),
to a receiver that reads it all and keeps none of it (so the row measures reading and sending only,
never writing 64 GiB). Plain blocking `ssl` sockets with 1 MiB reads: as cheap as Python can send.

    python -m bench.clone_full sink --port P --cert C --key K --ca CA
    python -m bench.clone_full send --port P --cert C --key K --ca CA --source FILE

Used by `bench.clone`, which counts the bytes on the wire.
"""

from __future__ import annotations

import argparse
import socket
import ssl
import sys
from pathlib import Path

PIECE = 1 << 20


def _sink(args: argparse.Namespace) -> int:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(args.cert, args.key)
    context.load_verify_locations(args.ca)
    context.verify_mode = ssl.CERT_REQUIRED
    with socket.create_server(("127.0.0.1", args.port)) as server:
        print("ready", flush=True)
        raw, _ = server.accept()
        with context.wrap_socket(raw, server_side=True) as conn:
            head = b""
            while b"\r\n\r\n" not in head:
                head += conn.recv(4096)
            header, _, rest = head.partition(b"\r\n\r\n")
            length = next(int(line.split(b":", 1)[1]) for line in header.split(b"\r\n")
                          if line.lower().startswith(b"content-length:"))
            remaining = length - len(rest)
            buffer = bytearray(PIECE)
            while remaining > 0:
                got = conn.recv_into(buffer, min(PIECE, remaining))
                if not got:
                    return 1
                remaining -= got
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    return 0


def _send(args: argparse.Namespace) -> int:
    context = ssl.create_default_context(cafile=args.ca)
    context.load_cert_chain(args.cert, args.key)
    size = Path(args.source).stat().st_size
    with socket.create_connection(("127.0.0.1", args.port)) as raw, \
            context.wrap_socket(raw, server_hostname="127.0.0.1") as conn, open(args.source, "rb") as source:
        conn.sendall(f"POST /v1beta1/upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {size}\r\n\r\n".encode())
        buffer = bytearray(PIECE)
        view = memoryview(buffer)
        while got := source.readinto(buffer):
            conn.sendall(view[:got])
        answer = conn.recv(4096)
    return 0 if answer.startswith(b"HTTP/1.1 200") else 1


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=["sink", "send"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--ca", required=True)
    parser.add_argument("--source")
    args = parser.parse_args()
    sys.exit(_sink(args) if args.role == "sink" else _send(args))


if __name__ == "__main__":
    main()
