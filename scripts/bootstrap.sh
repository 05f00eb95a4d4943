#!/usr/bin/env bash
# Installs everything the project needs on a Debian/Ubuntu machine, as root, idempotently:
# the system packages (qemu-img, nginx, filesystem tools, compressors) and a virtual environment
# at .venv/ holding the project and its development tools. Sourced by scripts/main.sh and
# scripts/test.sh; safe to run again (it only installs what is missing or changed).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export DEBIAN_FRONTEND=noninteractive

APT_PACKAGES=(
  python3 python3-venv python3-pip
  qemu-utils qemu-block-extra
  nginx
  e2fsprogs xfsprogs util-linux
  curl ca-certificates openssl
  tar gzip xz-utils zstd
  docker-registry apache2-utils
  nbdkit iproute2 iptables
  tinyproxy
)

missing_packages() {
  local pkg
  for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || echo "$pkg"
  done
}

install_system_packages() {
  local missing
  missing=$(missing_packages)
  [ -z "$missing" ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "bootstrap: these packages are missing and installing them needs root: $missing" >&2
    exit 1
  fi
  echo "bootstrap: installing system packages: $(echo $missing)"
  apt-get update -qq
  # shellcheck disable=SC2086
  apt-get install -y -qq --no-install-recommends $missing >/dev/null
  # The tests start their own tinyproxy on a free loopback port; Debian's service is not needed.
  case " $(echo $missing) " in *" tinyproxy "*) service tinyproxy stop >/dev/null 2>&1 || true ;; esac
}

pick_python() {
  local candidate
  for candidate in python3.13 python3.12 python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys, venv; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  # Older distributions (e.g. Ubuntu 22.04) ship 3.11 as an extra package.
  apt-get install -y -qq --no-install-recommends python3.11 python3.11-venv >/dev/null
  echo python3.11
}

install_venv() {
  local venv="$ROOT/.venv" stamp="$ROOT/.venv/.installed" want
  want=$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)
  if [ ! -x "$venv/bin/python" ]; then
    "$(pick_python)" -m venv "$venv"
  fi
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "bootstrap: installing Python packages into .venv"
    "$venv/bin/python" -m pip install -q --upgrade pip
    "$venv/bin/python" -m pip install -q -e "$ROOT[dev]"
    echo "$want" > "$stamp"
  fi
}

install_system_packages
install_venv
