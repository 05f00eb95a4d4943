#!/usr/bin/env bash
# The whole test suite: installs what it needs, then lint, strict types, layering, and pytest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/bootstrap.sh"
cd "$ROOT"
export PATH="$ROOT/.venv/bin:/usr/sbin:/sbin:$PATH"
echo "== ruff";        ruff check cdi importer uploadproxy bench tests
echo "== mypy";        mypy
echo "== import-linter"; lint-imports --no-cache
echo "== kube binaries"
# tests/kube runs a real kube-apiserver; its binaries are built once into a per-user cache.
if command -v go >/dev/null 2>&1; then
  PYCDI_KUBE_BIN="$("$ROOT/scripts/kube-binaries.sh" | tail -n 1)"; export PYCDI_KUBE_BIN
else
  echo "Go is not installed: the Kubernetes suites (tests/kube) will be skipped"
fi
# The tests start hundreds of Python processes; where PYTHONDONTWRITEBYTECODE is set each would
# compile the tree's sources again, so they are compiled once here.
python -m compileall -q -j 0 cdi importer uploadproxy bench tests >/dev/null
echo "== pytest";      pytest -q -p no:cacheprovider "$@"
