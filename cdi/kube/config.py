"""Credentials for the Kubernetes backend: a kubeconfig file, or the pod's service account in a cluster.

`load_configuration(kubeconfig)` returns kubernetes_asyncio's `Configuration` (server URL, CA, client
certificate or bearer token, token refresh for exec plugins and projected tokens). With no file given
it uses the in-cluster service account when one is mounted, else `$KUBECONFIG` or `~/.kube/config`,
as kubectl does. Any problem is a `KubeConfigError` with one line a user can act on.
"""

from __future__ import annotations

import os
from pathlib import Path

from kubernetes_asyncio.client import Configuration
from kubernetes_asyncio.config import ConfigException, load_incluster_config, load_kube_config

IN_CLUSTER_HOST = "KUBERNETES_SERVICE_HOST"


class KubeConfigError(Exception):
    """No usable credentials: the message says which file or variable is at fault."""


async def load_configuration(kubeconfig: Path | None = None) -> Configuration:
    configuration = Configuration()
    try:
        if kubeconfig is None and os.environ.get(IN_CLUSTER_HOST):
            load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        else:
            await load_kube_config(config_file=str(kubeconfig) if kubeconfig else None,
                                   client_configuration=configuration)
    except (ConfigException, OSError, ValueError, KeyError, TypeError) as e:
        where = str(kubeconfig) if kubeconfig else os.environ.get("KUBECONFIG", "~/.kube/config")
        raise KubeConfigError(f"cannot load Kubernetes credentials from {where}: {e}") from e
    return configuration
