"""Pod IPs: every live pod gets its own loopback address from 127.1.0.0/16.

Linux routes all of 127/8 to `lo`, so an importer listening on `<podIP>:8443` is reachable at
`https://<podIP>:8443/metrics` exactly as in a cluster, and several can listen on 8443 at once. The
address is recorded in the pod's `status.podIP` before any container starts; a pod is live (holds its
address) until it reaches a terminal phase. `allocate` is pure: it starts from a hash of the pod's uid
(so a pod tends to get the same address again) and probes for a free one. Called by the runner.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable

from cdi.cluster.protocol import Object
from cdi.embedded.pods.node import POD_NETWORK

_NETWORK = ipaddress.IPv4Network(POD_NETWORK)
_HOSTS_PER_BLOCK = 254  # x.y.z.1 - x.y.z.254: no .0 or .255, which some tools treat specially
_SIZE = (_NETWORK.num_addresses // 256) * _HOSTS_PER_BLOCK


class AddressesExhausted(Exception):
    """Every address of the pod network is taken by a live pod."""


def address(index: int) -> str:
    block, host = divmod(index % _SIZE, _HOSTS_PER_BLOCK)
    return str(_NETWORK.network_address + block * 256 + host + 1)


def allocate(pod_uid: str, in_use: Iterable[str]) -> str:
    taken = set(in_use)
    start = int.from_bytes(hashlib.sha256(pod_uid.encode()).digest()[:8], "big")
    for offset in range(_SIZE):
        candidate = address(start + offset)
        if candidate not in taken:
            return candidate
    raise AddressesExhausted(f"all {_SIZE} addresses of {POD_NETWORK} are in use by live pods")


def addresses_in_use(pods: Iterable[Object], except_uid: str = "") -> set[str]:
    """The pod IPs held by live pods (not Succeeded or Failed), other than `except_uid`'s."""
    used = set()
    for pod in pods:
        status = pod.get("status") or {}
        if (pod.get("metadata") or {}).get("uid") == except_uid or status.get("phase") in ("Succeeded", "Failed"):
            continue
        if status.get("podIP"):
            used.add(str(status["podIP"]))
    return used
