"""How CDI's components find each other on a cluster: names, ports and paths, written once.

`cdi manifests` renders Deployments, Services, the APIService and the webhook configurations from these;
`cdi-apiserver` serves the webhook paths and the aggregated upload API on `APISERVER_PORT`; the
controller and the upload proxy read the same names. They follow upstream's, so that tools and habits
built for upstream CDI (`oc get svc cdi-api`, alerts on `cdi-deployment`) keep working.
"""

from __future__ import annotations

from typing import Final

NAMESPACE: Final = "cdi"  # the default install namespace; every component takes it as an option

# Deployments, their service accounts, and the label selecting their pods (cdi.kubevirt.io: <name>).
CONTROLLER: Final = "cdi-deployment"
APISERVER: Final = "cdi-apiserver"
UPLOADPROXY: Final = "cdi-uploadproxy"
CONTROLLER_SA: Final = "cdi-sa"
APISERVER_SA: Final = "cdi-apiserver"
UPLOADPROXY_SA: Final = "cdi-uploadproxy"
COMPONENT_LABEL: Final = "cdi.kubevirt.io"

# Services.
APISERVER_SERVICE: Final = "cdi-api"  # 443 → APISERVER_PORT
UPLOADPROXY_SERVICE: Final = "cdi-uploadproxy"  # 443 → UPLOADPROXY_PORT
METRICS_SERVICE: Final = "cdi-prometheus-metrics"
APISERVER_PORT: Final = 8443
UPLOADPROXY_PORT: Final = 8443
HEALTH_PORT: Final = 8080
METRICS_PORT: Final = 8080

# The aggregated upload API.
UPLOAD_API_SERVICE: Final = "v1beta1.upload.cdi.kubevirt.io"  # APIService name
UPLOAD_API_GROUP_PRIORITY: Final = 1000
UPLOAD_API_VERSION_PRIORITY: Final = 15

# Admission webhooks served by cdi-apiserver: (configuration and webhook name, path on the server).
WEBHOOK_PATHS: Final = {
    "datavolume-validate": "/datavolume-validate",
    "datavolume-mutate": "/datavolume-mutate",
    "cdi-validate": "/cdi-validate",
    "objecttransfer-validate": "/objecttransfer-validate",
    "dataimportcron-validate": "/dataimportcron-validate",
    "populator-validate": "/populator-validate",
}
WEBHOOK_SUFFIX: Final = ".cdi.kubevirt.io"  # webhook names are <key><suffix>

# Secrets and config maps holding keys and certificates.
SIGNING_KEY_SECRET: Final = "cdi-api-signing-key"  # RSA key for upload and clone tokens (id_rsa, id_rsa.pub)
APISERVER_SERVING_SECRET: Final = "cdi-apiserver-server-cert"
APISERVER_CA_BUNDLE: Final = "cdi-apiserver-signer-bundle"
UPLOADPROXY_SERVING_SECRET: Final = "cdi-uploadproxy-server-cert"
UPLOADSERVER_CA_SECRET: Final = "cdi-uploadserver-ca"  # the CA the controller signs upload servers with
UPLOADSERVER_CLIENT_SECRET: Final = "cdi-uploadserver-client-cert"  # the proxy's client certificate
UPLOAD_TOKEN_KEYS_SECRET: Final = "cdi-upload-token-keys"  # the rotating key ring of upload tokens

# RBAC roles users bind.
CLONE_SOURCER_ROLE: Final = "cdi.kubevirt.io:clone-sourcer"
CONFIG_READER_ROLE: Final = "cdi.kubevirt.io:config-reader"
AGGREGATE_ROLES: Final = ("cdi.kubevirt.io:admin", "cdi.kubevirt.io:edit", "cdi.kubevirt.io:view")
