"""Names describing the one local node the embedded pod runner plays kubelet and scheduler for.

The node name is the volume provisioner's (`cdi.embedded.volumes.keys`), so a WaitForFirstConsumer
claim is provisioned for the node the pod is scheduled to. The finalizer follows that package's
`pycdi.local/` prefix. The marker variables are the one thing a local container gets that a real one
does not: they let a restarted runner find (and kill) processes a previous runner left behind.
"""

from __future__ import annotations

from typing import Final

from cdi.embedded.volumes.keys import ANN_SELECTED_NODE, ANN_VOLUME_PATH, NODE_NAME

__all__ = [
    "ANN_SELECTED_NODE",
    "ANN_VOLUME_PATH",
    "FINALIZER",
    "HOST_IP",
    "KUBELET",
    "MARKER_CONTAINER",
    "MARKER_POD_UID",
    "MARKER_STATE_DIR",
    "NODE_NAME",
    "POD_NETWORK",
    "SCHEDULER",
]

HOST_IP: Final = "127.0.0.1"  # status.hostIP: the node's address
POD_NETWORK: Final = "127.1.0.0/16"  # pod IPs: Linux routes all of 127/8 to lo, so each pod gets its own
FINALIZER: Final = "pycdi.local/pod-runner"  # held while a pod has processes, so deletion waits for them
KUBELET: Final = "kubelet"  # Events' source component for container events
SCHEDULER: Final = "default-scheduler"  # ... and for scheduling events
MARKER_STATE_DIR: Final = "PYCDI_POD_RUNNER_STATE"  # env marker: which runner started a process
MARKER_POD_UID: Final = "PYCDI_POD_UID"  # env marker: for which pod
MARKER_CONTAINER: Final = "PYCDI_CONTAINER"  # env marker: for which of its containers
