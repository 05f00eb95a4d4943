"""The operator's names, as upstream's operator spells them: finalizer, labels, ConfigMap, reasons, messages.

Shared by the planner (`cdi.operator.plan`), the reconciler and the installers; tests compare against these
and against the literal upstream strings.
"""

from __future__ import annotations

from typing import Final

from cdi.admission.uninstall import UNINSTALL_BLOCKED_MESSAGE as _UNINSTALL_BLOCKED_MESSAGE

FINALIZER: Final = "operator.cdi.kubevirt.io"
CREATE_VERSION_LABEL: Final = "operator.cdi.kubevirt.io/createVersion"
UPDATE_VERSION_LABEL: Final = "operator.cdi.kubevirt.io/updateVersion"
# The ConfigMap in the install namespace whose controller ownerReference names the active CDI CR.
CONFIG_MAP: Final = "cdi-config"
FIELD_MANAGER: Final = "cdi-operator"
COMPONENT: Final = "cdi-operator"  # the event source

# Condition types (openshift/custom-resource-status).
AVAILABLE: Final = "Available"
PROGRESSING: Final = "Progressing"
DEGRADED: Final = "Degraded"

# Reasons and messages of controller-lifecycle-operator-sdk, which upstream's operator uses.
DEPLOY_STARTED: Final = "DeployStarted"
DEPLOY_STARTED_MESSAGE: Final = "Started Deployment"
DEPLOY_COMPLETED: Final = "DeployCompleted"
DEPLOY_COMPLETED_MESSAGE: Final = "Deployment Completed"
UPGRADE_STARTED: Final = "UpgradeStarted"
CONFIG_ERROR: Final = "ConfigError"
UNWANTED_MESSAGE: Final = "Reconciling to error state, unwanted CDI object"
ILLEGAL_PHASE_MESSAGE: Final = "Reconciling to error state, illegal phase"
DOWNGRADE_MESSAGE: Final = "operator downgraded, will not reconcile"
# Upstream's cdi-validate webhook message: one rule, in `cdi.admission.uninstall`.
UNINSTALL_BLOCKED_MESSAGE: Final = _UNINSTALL_BLOCKED_MESSAGE

# Reasons of our own, where upstream has none (it logs and retries instead of saying why in a condition).
DOWNGRADE_REFUSED: Final = "DowngradeRefused"
UNINSTALL_BLOCKED: Final = "UninstallBlocked"
CUSTOMIZATION_REFUSED: Final = "CustomizationRefused"
INVALID_CERT_CONFIG: Final = "InvalidCertConfig"
NOT_READY: Final = "ComponentsNotReady"


def started_upgrade_message(version: str) -> str:
    return f"Started upgrade to version {version}"
