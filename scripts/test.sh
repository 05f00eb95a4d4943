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
echo "== pytest";      pytest -q -p no:cacheprovider "$@"
