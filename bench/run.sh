#!/usr/bin/env bash
# The data-path benchmark, run on purpose (never by the test suite): builds the images into a cache,
# serves them from nginx in a network namespace behind a 1 Gbit tbf-shaped veth and a 10 ms-each-way
# relay, and measures our importer against upstream-style pipelines and the link limit.
#   bash bench/run.sh            full run (~20-30 min on 2 cores, images cached in bench/.cache)
#   bash bench/run.sh --quick    small images, a few minutes
# Needs root (network namespaces) and what scripts/bootstrap.sh installs.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ "$(id -u)" -ne 0 ]; then
  echo "bench: needs root for network namespaces and tc" >&2
  exit 1
fi
cd "$ROOT"
# Every process measured starts from compiled modules, as in the image (which compiles them when it is
# built): where PYTHONDONTWRITEBYTECODE is set, each process would compile the tree's sources again.
"$ROOT/.venv/bin/python" -m compileall -q -j 0 cdi importer uploadproxy bench tests/support >/dev/null
exec "$ROOT/.venv/bin/python" -m bench "$@"
