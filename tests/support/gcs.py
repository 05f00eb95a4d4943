"""A GCS server on loopback for the GCS source's tests: gcp-storage-emulator's JSON API, storing
objects on disk, plus what the emulator lacks for credential tests.

The emulator ignores authentication, so `GcsEmulator` puts a small front in the same HTTP server:
an OAuth2 token endpoint (`POST /token`) that accepts only a jwt-bearer assertion signed by the key
of the fake service account this class generates (`service_account_key`), and, for buckets made
with `private=True`, a check that each request carries the access token it issued (401 otherwise,
worded as Cloud Storage words it). Tests tamper with an object by rewriting its file in the
emulator's data directory, leaving the md5Hash/crc32c it recorded at upload untouched.
"""

from __future__ import annotations

import json
import secrets
import threading
import urllib.parse
import urllib.request
from functools import partial
from http import server
from pathlib import Path
from types import TracebackType
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from gcp_storage_emulator.server import RequestHandler
from gcp_storage_emulator.storage import Storage

SERVICE_ACCOUNT = "importer@pycdi-tests.iam.gserviceaccount.com"
READ_ONLY_SCOPE = "https://www.googleapis.com/auth/devstorage.read_only"
_STORAGE_DIR = ".cloudstorage"  # the emulator's directory under its data dir


class _Front:
    """State shared by the request handlers: the key to check, the tokens issued, private buckets."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.token_url = ""
        self.tokens: set[str] = set()
        self.private: set[str] = set()
        self.token_requests = 0
        self.authorized_reads = 0


class _Handler(RequestHandler):
    def __init__(self, front: _Front, storage: Storage, *args: Any, **kwargs: Any) -> None:
        self.front = front
        super().__init__(storage, *args, **kwargs)

    def log_message(self, format: str, *args: Any) -> None:
        """Keep the access log out of the test output."""

    def do_POST(self) -> None:
        if urllib.parse.urlsplit(self.path).path == "/token":
            self._token()
        else:
            super().do_POST()

    def do_GET(self) -> None:
        bucket = self._bucket()
        if bucket in self.front.private:
            token = self.headers.get("Authorization", "").removeprefix("Bearer ")
            if token not in self.front.tokens:
                self._json(401, {"error": {"code": 401, "message": "Anonymous caller does not have "
                                           "storage.objects.get access to the Google Cloud Storage object."}})
                return
            self.front.authorized_reads += 1
        super().do_GET()

    def _bucket(self) -> str:
        parts = urllib.parse.urlsplit(self.path).path.split("/")
        # /storage/v1/b/<bucket>/o/<object> or /download/storage/v1/b/<bucket>/...
        return parts[parts.index("b") + 1] if "b" in parts[:-1] else ""

    def _token(self) -> None:
        self.front.token_requests += 1
        length = int(self.headers.get("Content-Length") or 0)
        form = urllib.parse.parse_qs(self.rfile.read(length).decode())
        try:
            if form.get("grant_type") != ["urn:ietf:params:oauth:grant-type:jwt-bearer"]:
                raise jwt.InvalidTokenError("unsupported grant type")
            claims = jwt.decode(form["assertion"][0], self.front.key.public_key(), algorithms=["RS256"],
                                audience=self.front.token_url, issuer=SERVICE_ACCOUNT,
                                options={"require": ["exp", "iat"]})
            if READ_ONLY_SCOPE not in str(claims.get("scope", "")).split():
                raise jwt.InvalidTokenError("scope missing")
        except (KeyError, jwt.PyJWTError) as e:
            self._json(400, {"error": "invalid_grant", "error_description": str(e)})
            return
        token = f"ya29.test-{secrets.token_hex(8)}"
        self.front.tokens.add(token)
        self._json(200, {"access_token": token, "expires_in": 3599, "token_type": "Bearer"})

    def _json(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class GcsEmulator:
    """gcp-storage-emulator on 127.0.0.1 (random port) with a token endpoint and private buckets."""

    def __init__(self, data_dir: Path) -> None:
        self._data_dir = data_dir
        self._front = _Front()
        self._storage = Storage(use_memory_fs=False, data_dir=str(data_dir))
        self._httpd: server.HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    def __enter__(self) -> GcsEmulator:
        # One request at a time: the emulator's storage is not thread-safe.
        self._httpd = server.HTTPServer(("127.0.0.1", 0), partial(_Handler, self._front, self._storage))
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._front.token_url = f"{self.url}/token"
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="gcs-emulator", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(10)

    @property
    def host(self) -> str:
        """host:port, as STORAGE_EMULATOR_HOST takes it."""
        return self.url.removeprefix("http://")

    @property
    def token_requests(self) -> int:
        return self._front.token_requests

    @property
    def authorized_reads(self) -> int:
        return self._front.authorized_reads

    def _request(self, method: str, path: str, data: bytes | None = None,
                 content_type: str = "application/json") -> Any:
        request = urllib.request.Request(f"{self.url}{path}", data=data, method=method,
                                         headers={"Content-Type": content_type})
        with urllib.request.urlopen(request, timeout=30) as reply:
            return json.loads(reply.read() or b"{}")

    def bucket(self, name: str, *, private: bool = False) -> str:
        if private:
            self._front.private.add(name)
        buckets = [b["name"] for b in self._request("GET", "/storage/v1/b").get("items", [])]
        if name not in buckets:
            self._request("POST", "/storage/v1/b", json.dumps({"name": name}).encode())
        return name

    def upload(self, bucket: str, name: str, path: Path) -> dict[str, Any]:
        """A media upload through the JSON API; returns the object resource (md5Hash, crc32c, ...)."""
        query = urllib.parse.urlencode({"uploadType": "media", "name": name})
        result: dict[str, Any] = self._request("POST", f"/upload/storage/v1/b/{bucket}/o?{query}",
                                               path.read_bytes(), "application/octet-stream")
        return result

    def tamper(self, bucket: str, name: str, offset: int = 1 << 16) -> None:
        """Flip one stored byte; the md5Hash and crc32c recorded at upload stay as they were."""
        stored = self._data_dir / _STORAGE_DIR / bucket / name
        data = bytearray(stored.read_bytes())
        data[min(offset, len(data) - 1)] ^= 0xFF
        stored.write_bytes(bytes(data))

    def forget_md5(self, bucket: str, name: str) -> None:
        """Make the object look like one built by `compose`: a CRC-32C and no MD5."""
        resource = dict(self._storage.get_file_obj(bucket, name))
        resource["md5Hash"] = None
        self._storage.patch_object(bucket, name, resource)

    def service_account_key(self, path: Path) -> Path:
        """A service-account key file for our fake account, its token_uri pointing at this server."""
        pem = self._front.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption()).decode()
        key = {"type": "service_account", "project_id": "pycdi-tests", "private_key_id": "0123456789abcdef",
               "private_key": pem, "client_email": SERVICE_ACCOUNT, "client_id": "1",
               "token_uri": self._front.token_url, "auth_uri": "https://accounts.google.com/o/oauth2/auth"}
        path.write_text(json.dumps(key))
        return path
