"""S3 servers on loopback for the S3 source's tests: moto in server mode.

`MotoS3` runs moto's WSGI app in this process on 127.0.0.1 (a random port), over plain HTTP or
HTTPS with the test PKI's server certificate, so tests can also reach into moto's backend to tamper
with an object's bytes behind its ETag and checksums, as bit rot or a bad disk on the server would.
moto accepts any credentials; `StrictMotoS3` runs a separate moto process with request
authentication switched on (IAM users and keys checked, signatures verified), for the tests of
refused credentials. Uploads go through boto3, as a user's tooling would.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

import boto3
from boto3.s3.transfer import TransferConfig
from moto.core import DEFAULT_ACCOUNT_ID
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from moto.s3.models import s3_backends
from werkzeug.serving import BaseWSGIServer, make_server

from tests.support.processes import stop_child
from tests.support.tls import TestPKI

REGION = "us-east-1"
MiB = 1 << 20


class _QuietHandler(MotoRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Keep moto's access log out of the test output."""


def s3_client(endpoint: str, access_key: str = "test-access", secret_key: str = "test-secret",
              ca: Path | None = None) -> Any:
    return boto3.client("s3", endpoint_url=endpoint, region_name=REGION, aws_access_key_id=access_key,
                        aws_secret_access_key=secret_key, verify=str(ca) if ca else True)


class MotoS3:
    """moto's S3 on 127.0.0.1 over HTTP, and over HTTPS too when given a PKI."""

    def __init__(self, pki: TestPKI | None = None) -> None:
        self._pki = pki
        self._servers: list[tuple[BaseWSGIServer, threading.Thread]] = []
        self.http_url = ""
        self.https_url = ""

    def __enter__(self) -> MotoS3:
        self.http_url = self._serve(None)
        if self._pki is not None:
            self.https_url = self._serve((str(self._pki.server_chain), str(self._pki.server_key)))
        self.client = s3_client(self.http_url)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        for server, thread in self._servers:
            server.shutdown()
            server.server_close()
            thread.join(10)
        self._servers.clear()

    def _serve(self, ssl_context: tuple[str, str] | None) -> str:
        app = DomainDispatcherApplication(create_backend_app)
        server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=_QuietHandler,
                             ssl_context=ssl_context)
        thread = threading.Thread(target=server.serve_forever, name="moto-s3", daemon=True)
        thread.start()
        self._servers.append((server, thread))
        scheme = "https" if ssl_context else "http"
        return f"{scheme}://127.0.0.1:{server.server_address[1]}"

    def bucket(self, name: str) -> str:
        try:
            self.client.create_bucket(Bucket=name)
        except self.client.exceptions.BucketAlreadyOwnedByYou:
            pass
        return name

    def upload(self, bucket: str, key: str, path: Path, *, multipart: bool = False, **extra: Any) -> None:
        """One PutObject (boto3 adds a CRC-32 by default), or a multipart upload of 5 MiB parts."""
        self.bucket(bucket)
        if multipart:
            config = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)
            self.client.upload_file(str(path), bucket, key, Config=config, ExtraArgs=extra or None)
        else:
            with path.open("rb") as body:
                self.client.put_object(Bucket=bucket, Key=key, Body=body, **extra)

    def url(self, bucket: str, key: str, *, tls: bool = False) -> str:
        return f"{self.https_url if tls else self.http_url}/{bucket}/{key}"

    def tamper(self, bucket: str, key: str, offset: int = 1 << 16) -> None:
        """Flip one byte of the stored object, leaving its ETag and checksums as they were."""
        stored = s3_backends[DEFAULT_ACCOUNT_ID]["aws"].buckets[bucket].keys[key]
        _ = stored.etag  # computed lazily: make sure the honest one is kept
        data = bytearray(stored.value)
        data[min(offset, len(data) - 1)] ^= 0xFF
        stored.value = bytes(data)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class StrictMotoS3:
    """A moto server process that authenticates every request: only `access_key`/`secret_key` work."""

    def __init__(self, work: Path) -> None:
        self._work = work
        self._process: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.access_key = ""
        self.secret_key = ""

    def __enter__(self) -> StrictMotoS3:
        port = _free_port()
        self.url = f"http://127.0.0.1:{port}"
        log = (self._work / "moto-strict.log").open("wb")
        self._process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                         stdout=log, stderr=subprocess.STDOUT, env={**os.environ})
        log.close()
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{self.url}/moto-api/data.json", timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or self._process.poll() is not None:
                    self.__exit__(None, None, None)
                    raise RuntimeError("moto server did not start") from None
                time.sleep(0.1)
        self._create_user()
        return self

    def _create_user(self) -> None:
        iam = boto3.client("iam", endpoint_url=self.url, region_name=REGION, aws_access_key_id="setup",
                           aws_secret_access_key="setup")
        iam.create_user(UserName="importer")
        policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
        iam.put_user_policy(UserName="importer", PolicyName="s3", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName="importer")["AccessKey"]
        self.access_key, self.secret_key = key["AccessKeyId"], key["SecretAccessKey"]

    def upload(self, bucket: str, key: str, path: Path) -> None:
        """Upload while authentication is still off, then switch it on for every later request."""
        client = s3_client(self.url, self.access_key, self.secret_key)
        client.create_bucket(Bucket=bucket)
        client.upload_file(str(path), bucket, key)
        request = urllib.request.Request(f"{self.url}/moto-api/reset-auth", data=b"0", method="POST",
                                         headers={"Content-Type": "text/plain"})
        urllib.request.urlopen(request, timeout=10).close()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if self._process is not None:
            stop_child(self._process)
            self._process = None
