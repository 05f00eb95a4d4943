"""Proxies from the environment, read as Go's `httpproxy.FromEnvironment` reads them (client-go and
upstream's importer both use it): `HTTP_PROXY`/`HTTPS_PROXY`/`NO_PROXY`, the upper-case name first, then
the lower-case one. It sits at the bottom so that the importer's HTTP source and the Kubernetes client
share one reading of `NO_PROXY`.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping


def env_value(environ: Mapping[str, str], name: str) -> str:
    """`NAME` or, if unset or empty, `name`: Go's order."""
    return environ.get(name.upper()) or environ.get(name.lower()) or ""


def bypasses_proxy(host: str, port: int, no_proxy: str) -> bool:
    """NO_PROXY as Go's httpproxy reads it: "*", host names (a leading dot optional; subdomains match),
    IP addresses and CIDR ranges, each optionally with a port."""
    host = host.lower().strip("[]")
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host)
    except ValueError:
        address = None
    for raw in no_proxy.split(","):
        entry = raw.strip().lower()
        if not entry:
            continue
        if entry == "*":
            return True
        entry_host, entry_port = entry, None
        if entry.count(":") == 1 or (entry.startswith("[") and "]:" in entry):
            entry_host, _, port_text = entry.rpartition(":")
            entry_port = int(port_text) if port_text.isdigit() else None
        entry_host = entry_host.strip("[]")
        if entry_port is not None and entry_port != port:
            continue
        if address is not None:
            try:
                if address in ipaddress.ip_network(entry_host, strict=False):
                    return True
            except ValueError:
                pass
            continue
        name = entry_host.lstrip(".")
        if host == name or host.endswith("." + name):
            return True
    return False


def environment_proxy(scheme: str, host: str, port: int | None,
                      environ: Mapping[str, str] | None = None) -> str | None:
    """The proxy URL the environment names for `scheme://host:port` (`http://` added when it names no
    scheme), or None when none is set or `NO_PROXY` exempts the target; a missing port is the scheme's
    default, as Go compares them."""
    environ = os.environ if environ is None else environ
    value = env_value(environ, f"{scheme}_proxy")
    port = port or (443 if scheme == "https" else 80)
    if not value or bypasses_proxy(host, port, env_value(environ, "no_proxy")):
        return None
    return value if "://" in value else f"http://{value}"
