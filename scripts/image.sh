#!/usr/bin/env bash
# Builds the project's container image locally with podman and prints its reference last; runs
# commands in it with the same podman settings.
#
#   bash scripts/image.sh                              build (cached) -> localhost/pycdi:<hash12>
#   bash scripts/image.sh run [OPTIONS...] -- CMD...   podman run --rm --network host, /tmp and the
#                                                      current directory mounted at the same paths;
#                                                      OPTIONS are passed to `podman run`
#   bash scripts/image.sh podman ARGS...               any podman command on the private storage
#                                                      (e.g. `podman save -o pycdi.tar REF`)
#   bash scripts/image.sh ref                          the reference this tree builds to, without
#                                                      building or installing anything (`cdi serve
#                                                      --pod-runtime auto` runs pods only in it)
#
# Installs what it needs (podman, runc, catatonit for --init, mmdebstrap from apt; as root, only what is missing). podman's
# storage and configuration live in a private directory (PYCDI_PODMAN_HOME, by default
# ${XDG_CACHE_HOME:-$HOME/.cache}/pycdi/podman), so the machine's own podman set-up is neither used
# nor changed. The Dockerfile's `FROM debian:bookworm-slim` is pulled when a registry is reachable;
# otherwise the base is made with mmdebstrap from the machine's apt sources and imported under that
# name (PYCDI_IMAGE_BASE=mmdebstrap forces this). The tag is a hash of the build context (the
# Dockerfile, pyproject.toml, README.md and the packages' sources) and of this script: an unchanged
# tree costs one `podman image exists`.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PODMAN_HOME="${PYCDI_PODMAN_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/pycdi/podman}"
# runroot holds locks and mount state, which must not outlive a reboot: keep it on a tmpfs-like path.
RUN_ROOT="${XDG_RUNTIME_DIR:-/run}/pycdi-podman-$(id -u)"
BASE_REF="docker.io/library/debian:bookworm-slim"
IMAGE_REPO="localhost/pycdi"
BUILD_STAGE_REF="localhost/pycdi-build:cache"
KEEP_BUILDS=3  # this build and the two before it (tail -n +3 skips the two newest older ones)
# The name the manifests use by default (cdi/install/workloads.py), so a loaded image is found as is.
DEFAULT_REF="docker.io/pycdi/pycdi:latest"
CONTEXT_PATHS=(Dockerfile pyproject.toml README.md cdi importer uploadproxy)
export DEBIAN_FRONTEND=noninteractive

log() { echo "image.sh: $*" >&2; }

install_packages() {
  local pkg missing=()
  for pkg in podman runc catatonit mmdebstrap; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    log "these packages are missing and installing them needs root: ${missing[*]}"
    exit 1
  fi
  log "installing ${missing[*]}"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null </dev/null
}

# crun refuses containers on this machine kind (cgroups in hybrid mode); podman's default ulimits are
# refused without CAP_SYS_RESOURCE, so they are capped at what this process may grant.
configure_podman() {
  local hard nofile
  hard="$(ulimit -Hn)"
  nofile=1048576
  [ "$hard" != unlimited ] && [ "$hard" -lt "$nofile" ] && nofile="$hard"
  mkdir -p "$PODMAN_HOME/storage" "$RUN_ROOT"
  cat >"$PODMAN_HOME/containers.conf.new" <<EOF
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=32768:32768"]

[engine]
runtime = "runc"
tmp_dir = "$RUN_ROOT/libpod"
EOF
  cat >"$PODMAN_HOME/storage.conf.new" <<EOF
[storage]
driver = "overlay"
graphroot = "$PODMAN_HOME/storage"
runroot = "$RUN_ROOT/storage"
EOF
  mv -f "$PODMAN_HOME/containers.conf.new" "$PODMAN_HOME/containers.conf"
  mv -f "$PODMAN_HOME/storage.conf.new" "$PODMAN_HOME/storage.conf"
  export CONTAINERS_CONF="$PODMAN_HOME/containers.conf"
  export CONTAINERS_STORAGE_CONF="$PODMAN_HOME/storage.conf"
}

host_apt_sources() {
  local f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [ -s "$f" ] && grep -qv '^\s*\(#\|$\)' "$f" && echo "$f"
  done
  return 0
}

# A minbase Debian with the same exclusions as the official slim image (~78 MB).
make_base_with_mmdebstrap() {
  local work rootfs
  work="$(mktemp -d "${TMPDIR:-/tmp}/pycdi-base.XXXXXX")"
  rootfs="$work/rootfs.tar"
  log "no registry: making $BASE_REF with mmdebstrap"
  local -a sources
  mapfile -t sources < <(host_apt_sources)
  if ! mmdebstrap --quiet --variant=minbase \
      --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
      --aptopt='Acquire::Check-Valid-Until "false"' \
      --dpkgopt='path-exclude=/usr/share/man/*' \
      --dpkgopt='path-exclude=/usr/share/locale/*' \
      --dpkgopt='path-include=/usr/share/locale/locale.alias' \
      --dpkgopt='path-exclude=/usr/share/doc/*' \
      --dpkgopt='path-include=/usr/share/doc/*/copyright' \
      --dpkgopt='path-exclude=/usr/share/info/*' \
      bookworm "$rootfs" "${sources[@]}" </dev/null; then
    rm -rf "$work"
    return 1
  fi
  podman import --quiet \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["bash"]' "$rootfs" "$BASE_REF" >/dev/null
  rm -rf "$work"
}

ensure_base() {
  podman image exists "$BASE_REF" && return 0
  if [ "${PYCDI_IMAGE_BASE:-auto}" != mmdebstrap ] &&
     timeout 120 podman pull --quiet "$BASE_REF" >/dev/null 2>&1 </dev/null; then
    return 0
  fi
  make_base_with_mmdebstrap
}

# Copies the files the Dockerfile uses into $1 (no caches, no virtualenv) and prints their hash.
stage_context() {
  local context="$1"
  (cd "$ROOT" && tar -cf - --exclude=__pycache__ --exclude='*.pyc' --exclude='*.egg-info' "${CONTEXT_PATHS[@]}") |
    tar -xf - -C "$context"
  {
    (cd "$context" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
    sha256sum <"$ROOT/scripts/image.sh"
  } | sha256sum | cut -c1-12
}

# Build secrets: the host's CA bundle and pip configuration let pip trust PyPI (or the configured
# index) inside the build without leaving anything in the image.
secret_args() {
  local ca pipconf f
  for f in "${SSL_CERT_FILE:-}" "${PIP_CERT:-}" /etc/ssl/certs/ca-certificates.crt /etc/pki/tls/certs/ca-bundle.crt; do
    if [ -n "$f" ] && [ -s "$f" ]; then ca="$f"; break; fi
  done
  for f in "${PIP_CONFIG_FILE:-}" "${XDG_CONFIG_HOME:-$HOME/.config}/pip/pip.conf" "$HOME/.pip/pip.conf" /etc/pip.conf; do
    if [ -n "$f" ] && [ -s "$f" ]; then pipconf="$f"; break; fi
  done
  [ -n "${ca:-}" ] && echo "--secret=id=cabundle,src=$ca"
  [ -n "${pipconf:-}" ] && echo "--secret=id=pipconf,src=$pipconf"
  return 0
}

CONTEXT_DIR=""
IMAGE_REF=""
cleanup() { [ -z "$CONTEXT_DIR" ] || rm -rf "$CONTEXT_DIR"; }
trap cleanup EXIT

build() {
  local hash ref old start
  CONTEXT_DIR="$(mktemp -d "${TMPDIR:-/tmp}/pycdi-context.XXXXXX")"
  hash="$(stage_context "$CONTEXT_DIR")"
  ref="$IMAGE_REPO:$hash"
  if podman image exists "$ref"; then
    log "up to date: $ref"
  else
    ensure_base
    local -a secrets
    mapfile -t secrets < <(secret_args)
    start=$SECONDS
    log "building $ref"
    # The build stage is tagged too, so that pruning below keeps its layers as the next build's cache.
    local target
    for target in "--target=build --tag=$BUILD_STAGE_REF" "--tag=$ref"; do
      # shellcheck disable=SC2086
      podman build --pull=never --network=host --layers "${secrets[@]}" $target \
        --file "$CONTEXT_DIR/Dockerfile" "$CONTEXT_DIR" </dev/null >&2
    done
    log "built $ref in $((SECONDS - start)) s"
    # Older builds go, with the layers no tagged image uses; the two before this one stay a while, so
    # that a test session or a pod runner started on one of them (by its tag) is not left without it.
    for old in $(podman images --format '{{.CreatedAt}}|{{.Repository}}:{{.Tag}}' --filter "reference=$IMAGE_REPO" |
                 LC_ALL=C sort -r | cut -d'|' -f2 | grep -vxF "$ref" | tail -n +"$KEEP_BUILDS"); do
      podman untag "$old" "$old" >/dev/null 2>&1 || true
    done
    podman image prune --force >/dev/null
  fi
  cleanup
  CONTEXT_DIR=""
  podman tag "$ref" "$DEFAULT_REF"
  log "size: $(podman image inspect --format '{{.Size}}' "$ref") bytes"
  IMAGE_REF="$ref"
  echo "$ref"
}

run_in_image() {
  local -a opts=()
  while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do opts+=("$1"); shift; done
  [ "$#" -gt 0 ] && shift
  if [ "$#" -eq 0 ]; then
    log "usage: image.sh run [PODMAN-RUN-OPTIONS...] -- CMD [ARGS...]"
    exit 2
  fi
  build >/dev/null
  local -a mounts=(-v /tmp:/tmp)
  [ "$PWD" != /tmp ] && mounts+=(-v "$PWD:$PWD")
  exec podman run --rm --network=host "${mounts[@]}" --workdir "$PWD" "${opts[@]}" \
    --entrypoint "$1" "$IMAGE_REF" "${@:2}"
}

print_ref() {
  CONTEXT_DIR="$(mktemp -d "${TMPDIR:-/tmp}/pycdi-context.XXXXXX")"
  echo "$IMAGE_REPO:$(stage_context "$CONTEXT_DIR")"
}

main() {
  if [ "${1:-}" = ref ]; then print_ref; return; fi
  install_packages
  configure_podman
  case "${1:-build}" in
    build) build ;;
    run) shift; run_in_image "$@" ;;
    podman) shift; exec podman "$@" ;;
    *) log "unknown command '$1' (build, run, podman, ref)"; exit 2 ;;
  esac
}

main "$@"
