#!/usr/bin/env bash
# The main job on the embedded default: installs what it needs, then runs the demo import.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/bootstrap.sh"
cd "$ROOT"
export PATH="$ROOT/.venv/bin:/usr/sbin:/sbin:$PATH"
exec cdi demo "$@"
