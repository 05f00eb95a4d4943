"""The CDI operator: reconciles the cluster-scoped `CDI` resource into an installed, configured CDI.

Observe → plan → apply, as everywhere here: `cdi.operator.reconciler` reads the CR, the `cdi-config`
ConfigMap that says which CR is the active one, the installation's readiness and whether DataVolumes
exist; `cdi.operator.plan` (pure) turns that into the desired status and an ordered list of actions;
the reconciler applies them. What "install" means is an `Installer` (`cdi.operator.installer`): on a
cluster, everything `cdi manifests` renders, customized by the CR and applied with server-side apply
(`cdi.operator.manifests`, with `cdi.operator.customize`); inside `cdi serve`, the control plane that is
already running (`EmbeddedInstaller`). The reconciler never knows which backend or installer it has.

This package imports nothing of `cdi.install` outside `cdi.operator.manifests`, so the embedded
controller set (`cdi.controllers.setup`) may use the reconciler without reaching the installer's renderers.
"""
