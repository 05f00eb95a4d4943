"""The Kubernetes backend: the `Cluster` protocol over a real API server (kubernetes_asyncio underneath).

`connect(kubeconfig=None)` loads a kubeconfig file (or the in-cluster service account) and returns a
`KubeCluster`. The pieces: `config` (credentials), `paths` (URL paths per kind), `transport` (HTTP with
auth and a client-side rate limit), `errors` (API Status → `cdi.cluster.errors`, in one place),
`watch` (the watch stream: ERROR events, 410 and bookmarks), `discovery` (which kinds the server
serves) and `client` (the verbs). It sits beside `cdi.embedded`; neither imports the other.
"""

from cdi.kube.client import KubeCluster, connect

__all__ = ["KubeCluster", "connect"]
