#!/usr/bin/env bash
# The host-assisted clone benchmark (issue 12), run on purpose (never by the test suite): a 64 GiB sparse
# raw image holding 2 GiB of data on a loop-mounted ext4 filesystem, cloned by cp --sparse=always, by our
# cdi-cloner → cdi-uploadserver over mutual TLS, and by an upstream-style full copy; prints the ratios.
#   bash bench/clone.sh                         the issue's case (~2-4 min on 2 cores)
#   bash bench/clone.sh --size-gib 8 --data-gib 1   smaller, while developing (written as -clone-partial)
#   bash bench/clone.sh --skip-full             without the slow upstream-style row (also -clone-partial)
# Needs root (mount) and what scripts/bootstrap.sh installs.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ "$(id -u)" -ne 0 ]; then
  echo "bench: needs root to mount the scratch filesystem" >&2
  exit 1
fi
cd "$ROOT"
exec "$ROOT/.venv/bin/python" -m bench.clone "$@"
