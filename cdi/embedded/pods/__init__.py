"""The embedded mode's local kubelet and scheduler: pods run as child processes of `cdi serve`.

`PodRunner` (in `runner`) reconciles Pods: it schedules them to the one local node
(`scheduling`), maps their volumes to paths on this machine (`volumes`, `layout`), starts each
container as a process group (`starter`, `processes`), restarts them by their restart policy with
kubelet's crash-loop back-off (`restarts`) and writes their status as kubelet does (`status`,
`podwrites`). `controllers` gives the manager its spec; `log_path` tells `cdi logs` where a
container's output is.
"""

from cdi.embedded.pods.controller import controllers
from cdi.embedded.pods.node import FINALIZER, HOST_IP, NODE_NAME
from cdi.embedded.pods.paths import log_path
from cdi.embedded.pods.runner import PodRunner

__all__ = ["FINALIZER", "HOST_IP", "NODE_NAME", "PodRunner", "controllers", "log_path"]
