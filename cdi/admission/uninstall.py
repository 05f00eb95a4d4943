"""Whether the CDI resource may be deleted: upstream's `cdi-validate` rule on DELETE, as a pure function.

With `spec.uninstallStrategy: BlockUninstallIfWorkloadsExist`, deleting an installed CDI is refused while any
DataVolume exists; a CDI that never installed (phase empty) or failed (`Error`) may always go. The caller
says whether DataVolumes exist (it lists them; a pure handler cannot): `cdi apiserver`'s cdi-validate webhook
(`cdi.apiserver.webhooks`) on a cluster, and the operator (`cdi.operator.plan`), which keeps its finalizer
for the same reason where no webhook runs (the embedded store has no DELETE admission) or the webhook was
unreachable (its failurePolicy is Ignore).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

BLOCK_UNINSTALL: Final = "BlockUninstallIfWorkloadsExist"
# Upstream's message, word for word (pkg/apiserver/webhooks/cdi-validate.go).
UNINSTALL_BLOCKED_MESSAGE: Final = ("Rejecting the uninstall request, since there are still DataVolumes present. "
                                    "Either delete all DataVolumes or change the uninstall strategy before "
                                    "uninstalling CDI.")
_ALWAYS_DELETABLE = ("", "Error")


def uninstall_refusal(cdi: Mapping[str, Any], data_volumes_exist: bool) -> str | None:
    """The reason deleting `cdi` is refused, or None when it may be deleted."""
    phase = (cdi.get("status") or {}).get("phase") or ""
    if phase in _ALWAYS_DELETABLE:
        return None
    strategy = (cdi.get("spec") or {}).get("uninstallStrategy")
    if strategy == BLOCK_UNINSTALL and data_volumes_exist:
        return UNINSTALL_BLOCKED_MESSAGE
    return None
