#!/usr/bin/env bash
# The scale benchmark, run on purpose (never by the test suite): 1,000 blank DataVolumes against each
# backend — the embedded store and a real kube-apiserver + etcd — with CDI's controllers in their own
# process and the node simulated (kwok-style). Prints time to all Succeeded, API requests per DataVolume,
# controller peak RSS and reconcile times, and writes bench/results/<date>-scale.{md,json}.
#   bash bench/scale.sh                          both backends, 1,000 each (~15 min on 2 cores)
#   bash bench/scale.sh --count 100              smaller, while developing (results named -scale-partial)
#   bash bench/scale.sh --backends embedded      one backend
# Builds the Kubernetes binaries once (scripts/kube-binaries.sh, needs Go the first time).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
if [[ " $* " != *" --backends embedded "* ]]; then
  PYCDI_KUBE_BIN="$("$ROOT/scripts/kube-binaries.sh" | tail -n 1)"
  export PYCDI_KUBE_BIN
fi
exec "$ROOT/.venv/bin/python" -m bench.scale "$@"
