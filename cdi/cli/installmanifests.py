"""`cdi manifests`: print everything a cluster install needs, for `kubectl apply --server-side -f -`.

The Namespace, CDI's CRDs, least-privilege RBAC for the controller, API server and upload proxy plus
the roles users bind, the certificates in Secrets and ConfigMaps, the Services and Deployments (one
image, `--image`), the upload APIService and the admission webhooks (`cdi.install.render_all`); with
`--monitoring` also the PrometheusRule (upstream's alerts and recording rules) and the ServiceMonitor, which
need the prometheus-operator's CRDs (`cdi.install.alerts`).

This module does the I/O around the pure renderers: it reads and writes the PEM files of `--ca-dir`
(so applying again reuses the certificates instead of rotating them; without it every run issues new
ones) and prints multi-document YAML on stdout. A file in `--ca-dir` that is not a certificate or key
is an error on one line; nothing is printed then.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import yaml

from cdi.cli.errors import CliError
from cdi.contracts.deployment import NAMESPACE
from cdi.install import DEFAULT_IMAGE, InstallOptions, render_all
from cdi.install.tls import Credentials, credentials
from cdi.pki import KeyPair

_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


def _namespace(text: str) -> str:
    if not _DNS_LABEL.fullmatch(text):
        raise argparse.ArgumentTypeError(f"invalid namespace {text!r}: it must be a DNS label (a-z, 0-9, '-')")
    return text


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "manifests", help="print the manifests that install CDI on a cluster (kubectl apply --server-side -f -)",
        description="Print CDI's cluster install as multi-document YAML: "
                    "cdi manifests | kubectl apply --server-side -f -")
    parser.add_argument("--namespace", "-n", type=_namespace, default=NAMESPACE,
                        help=f"namespace to install into (default: {NAMESPACE})")
    parser.add_argument("--image", default=DEFAULT_IMAGE,
                        help=f"the image every component runs (default: {DEFAULT_IMAGE})")
    parser.add_argument("--ca-dir", type=Path, default=None, metavar="DIR",
                        help="keep the CAs and certificates in DIR and reuse them on later runs "
                             "(default: new ones every run)")
    parser.add_argument("--monitoring", action="store_true",
                        help="also print the PrometheusRule (alerts) and ServiceMonitor; needs the "
                             "prometheus-operator's CRDs (monitoring.coreos.com) on the cluster")
    parser.set_defaults(run=lambda args, home: run(args.namespace, args.image, args.ca_dir, sys.stdout,
                                                   monitoring=args.monitoring))


class _Dumper(yaml.SafeDumper):
    """Plain YAML: no anchors and aliases even where the renderers share a value."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def to_yaml(documents: list[dict[str, Any]]) -> str:
    return yaml.dump_all(documents, Dumper=_Dumper, sort_keys=False, default_flow_style=False, explicit_start=True)


def load_pairs(directory: Path) -> dict[str, KeyPair]:
    """The pairs stored in `directory` (`<stem>.crt` + `<stem>.key`), checked to parse."""
    pairs = {}
    for stem in Credentials.__dataclass_fields__:
        stem = stem.replace("_", "-")
        cert, key = directory / f"{stem}.crt", directory / f"{stem}.key"
        if not (cert.is_file() and key.is_file()):
            continue
        pair = KeyPair(cert.read_bytes(), key.read_bytes())
        try:
            pair.certificate  # noqa: B018 -- parse now, to report the file
        except ValueError as e:
            raise CliError(f"{cert} is not a PEM certificate: {e}") from e
        pairs[stem] = pair
    return pairs


def save_pairs(directory: Path, creds: Credentials, previous: dict[str, KeyPair]) -> None:
    """Write the pairs that changed; keys readable by their owner only."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    for stem, pair in creds.pairs().items():
        if previous.get(stem) == pair:
            continue
        key = directory / f"{stem}.key"
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(pair.key_pem)
        (directory / f"{stem}.crt").write_bytes(pair.cert_pem)


def run(namespace: str, image: str, ca_dir: Path | None, out: TextIO, *, monitoring: bool = False) -> int:
    stored = load_pairs(ca_dir) if ca_dir is not None and ca_dir.is_dir() else {}
    try:
        creds = credentials(namespace, datetime.now(UTC), stored)
    except ValueError as e:  # a key that does not parse
        raise CliError(f"cannot use the certificates in {ca_dir}: {e}") from e
    if ca_dir is not None:
        save_pairs(ca_dir, creds, stored)
    out.write(to_yaml(render_all(InstallOptions(creds, namespace, image, monitoring))))
    out.flush()
    return 0
