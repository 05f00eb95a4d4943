"""The host-assisted clone's source side (upstream's clone-controller): for a PVC annotated
`k8s.io/CloneRequest: <srcNs>/<srcPvc>` whose upload server (`cdi.controllers.upload`) is ready, a
`cdi-cloner` pod in the source namespace streams the source to it.

    usage       which pods use the source read-write (`CloneSourceInUse`)
    podspec     the source pod and its client-certificate Secret (pure)
    plan        the decisions, a pure function of one observation
    controller  observe → plan → apply; `controllers(...)` for the manager
"""

from cdi.controllers.hostclone.controller import controllers

__all__ = ["controllers"]
