"""Pure rendering of the nginx configuration and htpasswd file used by `tests/support/nginx.py`.

Every listener (plain, basic-auth, TLS, TLS + basic-auth) serves the same document root with the
same set of locations, each reproducing one behaviour an HTTP data source must cope with. The
`Location` prefixes are the contract tests use to build URLs; `render_config` is the only place
that knows which nginx directives produce each behaviour.
"""

from __future__ import annotations

import base64
import enum
import hashlib
from dataclasses import dataclass
from pathlib import Path

# sub_filter strips Content-Length (the response goes out chunked) while leaving the bytes intact
# as long as the pattern never occurs; this one is long and random enough never to match.
_NEVER_MATCHES = "pycdi-sub-filter-sentinel-7f3c9a1e5b2d4c6e8a0f"


class Location(enum.StrEnum):
    """URL prefixes served by every listener; files live under the document root."""

    FILES = "/"  # static files: Content-Length, Accept-Ranges: bytes, 206 on Range
    REDIRECT = "/redirect/"  # 302 to /<rest> on the same listener
    MOVED = "/moved/"  # 301 to /<rest> on the same listener
    TO_AUTH = "/to-auth/"  # 302 to /<rest> on the basic-auth listener of the same scheme
    NOT_FOUND = "/status/404/"  # always 404
    UNAVAILABLE = "/status/503/"  # always 503
    HTML = "/html/"  # the files, labelled Content-Type: text/html
    CHUNKED = "/chunked/"  # the files, chunked, without Content-Length (nor Accept-Ranges)
    NO_RANGES = "/no-ranges/"  # the files, with Content-Length but no Accept-Ranges; Range ignored
    # The files at the constructor's limit_rate. nginx lets the first second's worth through at
    # once, so N bytes take about ceil(N / rate) - 1 seconds; Range requests still work.
    SLOW = "/slow/"


@dataclass(frozen=True)
class Credentials:
    """Basic-auth user accepted by the auth listeners."""

    username: str = "admin"
    password: str = "password"


@dataclass(frozen=True)
class Ports:
    """The loopback TCP port of each listener."""

    plain: int
    auth: int
    tls: int
    tls_auth: int

    def select(self, *, tls: bool, auth: bool) -> int:
        if tls:
            return self.tls_auth if auth else self.tls
        return self.auth if auth else self.plain

    def all(self) -> tuple[int, ...]:
        return (self.plain, self.auth, self.tls, self.tls_auth)


@dataclass(frozen=True)
class ConfigInputs:
    """Everything `render_config` needs; all paths absolute."""

    workdir: Path
    docroot: Path
    ports: Ports
    cert: Path
    key: Path
    htpasswd: Path
    slow_rate: int  # bytes per second
    run_as_root: bool


def htpasswd_line(credentials: Credentials) -> str:
    """An htpasswd entry in nginx's `{SHA}` scheme (base64 of the SHA-1 of the password)."""
    digest = base64.b64encode(hashlib.sha1(credentials.password.encode()).digest()).decode()
    return f"{credentials.username}:{{SHA}}{digest}\n"


def _locations(docroot: Path, slow_rate: int, to_auth: str | None) -> str:
    root = f"{docroot}/"
    lines = [
        "location / { }",
        "location /redirect/ { rewrite ^/redirect/(.*)$ /$1 redirect; }",
        "location /moved/ { rewrite ^/moved/(.*)$ /$1 permanent; }",
        "location /status/404/ { return 404; }",
        "location /status/503/ { return 503; }",
        f"location /html/ {{ alias {root}; types {{ }} default_type text/html; }}",
        f"location /chunked/ {{ alias {root}; sub_filter_types *; sub_filter '{_NEVER_MATCHES}' ''; }}",
        f"location /no-ranges/ {{ alias {root}; max_ranges 0; }}",
        f"location /slow/ {{ alias {root}; limit_rate {slow_rate}; }}",
    ]
    if to_auth is not None:
        lines.append(f"location /to-auth/ {{ rewrite ^/to-auth/(.*)$ {to_auth}/$1 redirect; }}")
    else:  # already on an auth listener: the hop stays here
        lines.append("location /to-auth/ { rewrite ^/to-auth/(.*)$ /$1 redirect; }")
    return "\n        ".join(lines)


def _server(inputs: ConfigInputs, *, tls: bool, auth: bool) -> str:
    port = inputs.ports.select(tls=tls, auth=auth)
    scheme = "https" if tls else "http"
    to_auth = None if auth else f"{scheme}://127.0.0.1:{inputs.ports.select(tls=tls, auth=True)}"
    extra: list[str] = []
    if tls:
        extra += [
            f"ssl_certificate {inputs.cert};",
            f"ssl_certificate_key {inputs.key};",
            "ssl_protocols TLSv1.2 TLSv1.3;",
        ]
    if auth:
        extra += ['auth_basic "pycdi test";', f"auth_basic_user_file {inputs.htpasswd};"]
    listen = f"listen 127.0.0.1:{port}{' ssl' if tls else ''};"
    body = "\n        ".join(
        [listen, f"root {inputs.docroot};", *extra, _locations(inputs.docroot, inputs.slow_rate, to_auth)]
    )
    return f"    server {{\n        {body}\n    }}\n"


def render_config(inputs: ConfigInputs) -> str:
    """The complete nginx.conf: foreground master, one worker, all state inside `workdir`."""
    work = inputs.workdir
    # Workers default to user "nobody" when the master runs as root; they could not read a
    # pytest tmp dir (mode 0700), so keep them as root in that case.
    user = "user root;\n" if inputs.run_as_root else ""
    temp_paths = "".join(
        f"    {kind}_temp_path {work}/tmp-{kind};\n" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    servers = "".join(_server(inputs, tls=tls, auth=auth) for tls in (False, True) for auth in (False, True))
    return (
        f"{user}daemon off;\nmaster_process on;\nworker_processes 1;\n"
        f"pid {work}/nginx.pid;\nerror_log {work}/error.log notice;\n"
        "events { worker_connections 512; }\n"
        "http {\n"
        '    log_format pycdi \'$server_port "$request" $status $body_bytes_sent "$http_range"\';\n'
        f"    access_log {work}/access.log pycdi;\n"
        f"{temp_paths}"
        "    types { }\n    default_type application/octet-stream;\n"
        "    sendfile on;\n    server_tokens off;\n    keepalive_timeout 30s;\n"
        f"{servers}"
        "}\n"
    )
