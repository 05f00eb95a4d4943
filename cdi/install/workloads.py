"""CDI's three Deployments and their Services, all from one image.

* `cdi-deployment` runs `cdi controller` (leader election through a Lease, so replicas are safe); its
  health port, named `metrics`, serves `/healthz` (liveness), `/readyz` (ready while it leads) and `/metrics`.
  As upstream, `cdi-prometheus-metrics` selects every pod labelled `prometheus.cdi.kubevirt.io: "true"` on its
  port named `metrics`: the controller's and the operator's (`cdi.install.operatorbundle`), so Prometheus
  has an `up` series for `cdi-operator-*` pods and `CDIOperatorDown` means something.
* `cdi-apiserver` runs `cdi apiserver` on `APISERVER_PORT`: admission webhooks and the upload token API
  behind Service `cdi-api` (443 → 8443), with its serving certificate and CA bundle mounted where
  upstream mounts them.
* `cdi-uploadproxy` runs `cdi-uploadproxy` behind Service `cdi-uploadproxy` (443 → 8443): its serving
  certificate, the client certificate and CA it uses towards upload servers are mounted at the paths
  `uploadproxy.main` reads by default (`cdi.contracts.upload_protocol`), and the token verification key
  comes from the API server's signing-key Secret, as upstream's `APISERVER_PUBLIC_KEY`.

Every pod meets the `restricted` Pod Security Standard: non-root uid 1001 (the image's user), seccomp
RuntimeDefault, no capabilities, no privilege escalation, a read-only root filesystem with an emptyDir
on /tmp, and resource requests. Pure: `workloads(namespace, image)` returns the documents.
"""

from __future__ import annotations

from pathlib import PurePosixPath

from cdi.contracts import deployment as dep
from cdi.contracts import upload_protocol as up
from cdi.install.alerts import PROMETHEUS_LABEL
from cdi.install.objects import Object, document, metadata
from cdi.install.tls import BUNDLE_KEY, UPLOADSERVER_CA_BUNDLE, UPLOADSERVER_CLIENT_SECRET

DEFAULT_IMAGE = "pycdi/pycdi:latest"
USER_ID = 1001  # the Dockerfile's USER
SERVICE_PORT = 443
CERTS_DIR = "/var/run/certs"  # upstream's mount point for certificate volumes
REQUESTS = {"cpu": "10m", "memory": "150Mi"}
SCRAPED = {PROMETHEUS_LABEL: "true"}  # upstream's label on the pods (and Service) Prometheus scrapes
METRICS_PORT_NAME = "metrics"
_TLS_FILES = ("tls.crt", "tls.key")
SIGNING_PUBLIC_KEY = "id_rsa.pub"  # key of dep.SIGNING_KEY_SECRET holding the public half


def selector(component: str) -> dict[str, str]:
    return {dep.COMPONENT_LABEL: component}


def pod_security_context() -> Object:
    return {"runAsNonRoot": True, "runAsUser": USER_ID, "runAsGroup": USER_ID, "fsGroup": USER_ID,
            "seccompProfile": {"type": "RuntimeDefault"}}


def container_security_context() -> Object:
    return {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}, "privileged": False,
            "readOnlyRootFilesystem": True, "runAsNonRoot": True}


def _probe(path: str, port: int, scheme: str, *, delay: int, failures: int) -> Object:
    return {"httpGet": {"path": path, "port": port, "scheme": scheme}, "initialDelaySeconds": delay,
            "periodSeconds": 10, "timeoutSeconds": 5, "failureThreshold": failures}


def _probes(live: str, ready: str, port: int, scheme: str = "HTTP") -> Object:
    return {"livenessProbe": _probe(live, port, scheme, delay=15, failures=3),
            "readinessProbe": _probe(ready, port, scheme, delay=2, failures=3)}


def _common_env() -> list[Object]:
    return [{"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "HOME", "value": "/tmp"},  # the root filesystem is read-only
            {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"}]


def _tmp() -> tuple[Object, Object]:
    return {"name": "tmp", "emptyDir": {}}, {"name": "tmp", "mountPath": "/tmp"}


def _mounted(name: str, source: Object, path: str) -> tuple[Object, Object]:
    """A volume and its read-only mount."""
    return {"name": name, **source}, {"name": name, "mountPath": path, "readOnly": True}


def _secret_files(secret: str, items: dict[str, str]) -> Object:
    return {"secret": {"secretName": secret, "items": [{"key": k, "path": p} for k, p in items.items()]}}


def _config_map_files(config_map: str, items: dict[str, str]) -> Object:
    return {"configMap": {"name": config_map, "items": [{"key": k, "path": p} for k, p in items.items()]}}


_LEADING = ("name", "image", "command", "args", "env")


def deployment(component: str, namespace: str, service_account: str, container: Object,
               mounts: list[tuple[Object, Object]], *, pod_labels: dict[str, str] | None = None) -> Object:
    volumes = [_tmp(), *mounts]
    container = {**{key: container[key] for key in ("name", "image", "command", "args") if key in container},
                 "imagePullPolicy": "IfNotPresent", "env": [*_common_env(), *container.get("env", [])],
                 **{key: value for key, value in container.items() if key not in _LEADING},
                 "resources": {"requests": dict(REQUESTS)}, "securityContext": container_security_context(),
                 "volumeMounts": [mount for _volume, mount in volumes]}
    pod = {"serviceAccountName": service_account, "securityContext": pod_security_context(),
           "nodeSelector": {"kubernetes.io/os": "linux"}, "containers": [container],
           "volumes": [volume for volume, _mount in volumes]}
    template = {"metadata": {"labels": metadata(component, component=component, extra_labels=pod_labels)["labels"]},
                "spec": pod}
    return document("apps/v1", "Deployment", metadata(component, namespace, component=component),
                    spec={"replicas": 1, "selector": {"matchLabels": selector(component)}, "template": template})


def controller(namespace: str, image: str) -> Object:
    container = {"name": dep.CONTROLLER, "image": image, "command": ["cdi"],
                 "args": ["controller", "--namespace", namespace, "--image", image,
                          "--health-port", str(dep.HEALTH_PORT)],
                 "ports": [{"name": METRICS_PORT_NAME, "containerPort": dep.HEALTH_PORT, "protocol": "TCP"}],
                 **_probes("/healthz", "/readyz", dep.HEALTH_PORT)}
    return deployment(dep.CONTROLLER, namespace, dep.CONTROLLER_SA, container, [], pod_labels=SCRAPED)


def apiserver(namespace: str, image: str) -> Object:
    container = {"name": dep.APISERVER, "image": image, "command": ["cdi"],
                 "args": ["apiserver", "--namespace", namespace, "--port", str(dep.APISERVER_PORT)],
                 "ports": [{"name": "https", "containerPort": dep.APISERVER_PORT, "protocol": "TCP"}],
                 **_probes("/healthz", "/readyz", dep.APISERVER_PORT, "HTTPS")}
    mounts = [
        _mounted("server-cert", _secret_files(dep.APISERVER_SERVING_SECRET, {name: name for name in _TLS_FILES}),
                 f"{CERTS_DIR}/{dep.APISERVER_SERVING_SECRET}"),
        _mounted("ca-bundle", _config_map_files(dep.APISERVER_CA_BUNDLE, {BUNDLE_KEY: BUNDLE_KEY}),
                 f"{CERTS_DIR}/{dep.APISERVER_CA_BUNDLE}"),
    ]
    return deployment(dep.APISERVER, namespace, dep.APISERVER_SA, container, mounts)


def _files_at(*defaults: str) -> tuple[str, list[str]]:
    """The directory the proxy's default paths share, and their file names."""
    paths = [PurePosixPath(p) for p in defaults]
    assert len({p.parent for p in paths}) == 1, defaults
    return str(paths[0].parent), [p.name for p in paths]


def uploadproxy(namespace: str, image: str) -> Object:
    server_dir, (server_crt, server_key) = _files_at(up.DEFAULT_SERVER_CERT, up.DEFAULT_SERVER_KEY)
    client_dir, (client_crt, client_key) = _files_at(up.DEFAULT_UPLOAD_CLIENT_CERT, up.DEFAULT_UPLOAD_CLIENT_KEY)
    ca_dir, (ca_file,) = _files_at(up.DEFAULT_UPLOAD_SERVER_CA)
    public_key = {"secretKeyRef": {"name": dep.SIGNING_KEY_SECRET, "key": SIGNING_PUBLIC_KEY}}
    container = {"name": dep.UPLOADPROXY, "image": image, "command": ["cdi-uploadproxy"],
                 "env": [{"name": up.LISTEN_PORT, "value": str(dep.UPLOADPROXY_PORT)},
                         {"name": up.APISERVER_PUBLIC_KEY, "valueFrom": public_key}],
                 "ports": [{"name": "https", "containerPort": dep.UPLOADPROXY_PORT, "protocol": "TCP"}],
                 **_probes(up.HEALTHZ_PATH, up.HEALTHZ_PATH, dep.UPLOADPROXY_PORT, "HTTPS")}
    mounts = [
        _mounted("server-cert", _secret_files(dep.UPLOADPROXY_SERVING_SECRET,
                                              {"tls.crt": server_crt, "tls.key": server_key}), server_dir),
        _mounted("client-cert", _secret_files(UPLOADSERVER_CLIENT_SECRET,
                                              {"tls.crt": client_crt, "tls.key": client_key}), client_dir),
        _mounted("upload-server-ca", _config_map_files(UPLOADSERVER_CA_BUNDLE, {BUNDLE_KEY: ca_file}), ca_dir),
    ]
    return deployment(dep.UPLOADPROXY, namespace, dep.UPLOADPROXY_SA, container, mounts)


def service(name: str, namespace: str, component: str, port: int, target: int, port_name: str) -> Object:
    return document("v1", "Service", metadata(name, namespace, component=component),
                    spec={"type": "ClusterIP", "selector": selector(component),
                          "ports": [{"name": port_name, "port": port, "targetPort": target, "protocol": "TCP"}]})


def metrics_service(namespace: str) -> Object:
    """Upstream's `cdi-prometheus-metrics`: every scraped pod (controller and operator), by port name."""
    return document("v1", "Service", metadata(dep.METRICS_SERVICE, namespace, component=dep.CONTROLLER,
                                              extra_labels=SCRAPED),
                    spec={"type": "ClusterIP", "selector": dict(SCRAPED),
                          "ports": [{"name": METRICS_PORT_NAME, "port": dep.METRICS_PORT,
                                     "targetPort": METRICS_PORT_NAME, "protocol": "TCP"}]})


def services(namespace: str) -> list[Object]:
    return [service(dep.APISERVER_SERVICE, namespace, dep.APISERVER, SERVICE_PORT, dep.APISERVER_PORT, "https"),
            service(dep.UPLOADPROXY_SERVICE, namespace, dep.UPLOADPROXY, SERVICE_PORT, dep.UPLOADPROXY_PORT, "https"),
            metrics_service(namespace)]


def workloads(namespace: str, image: str) -> list[Object]:
    return [controller(namespace, image), apiserver(namespace, image), uploadproxy(namespace, image)]
