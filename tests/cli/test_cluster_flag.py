"""`--kubeconfig FILE` on the kubectl-like verbs, without a cluster: every verb takes the flag, a kubeconfig
that cannot be loaded is one error line naming the file, and `cdi logs -f` on a cluster prints only what a
log fetched again adds (`new_output`). The verbs against a real API server: `tests/kube/test_cli_on_cluster.py`
and `tests/kube/test_node_logs.py`."""

from __future__ import annotations

from pathlib import Path

import pytest

from cdi.cli.logs import new_output
from tests.cli.conftest import Run


@pytest.mark.parametrize(("text", "printed", "new"), [
    ("", "", ""),
    ("one\n", "", "one\n"),
    ("one\ntwo\n", "one\n", "two\n"),
    ("one\ntwo\n", "one\ntwo\n", ""),
    ("again\n", "one\ntwo\n", "again\n"),  # the container restarted: its log began anew
])
def test_a_followed_log_prints_what_is_new(text: str, printed: str, new: str) -> None:
    assert new_output(text, printed) == new


@pytest.mark.parametrize("argv", [
    ("get", "dv"), ("describe", "dv", "x"), ("delete", "dv", "x"), ("wait", "dv/x", "--for=delete"),
    ("logs", "x"), ("apply", "-f", "MANIFEST"), ("create", "-f", "MANIFEST"),
    ("create", "configmap", "x", "--from-literal", "a=b"),
])
def test_every_verb_takes_a_kubeconfig_and_reports_a_bad_one_on_one_line(cdi: Run, tmp_path: Path,
                                                                         argv: tuple[str, ...]) -> None:
    missing = tmp_path / "nowhere.kubeconfig"
    manifest = tmp_path / "cm.yaml"
    manifest.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")
    result = cdi(*(str(manifest) if arg == "MANIFEST" else arg for arg in argv), "--kubeconfig", str(missing))
    assert result.code == 1 and result.out == ""
    assert len(result.error_lines) == 1
    assert result.error_lines[0].startswith(f"error: cannot load Kubernetes credentials from {missing}: ")
