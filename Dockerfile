# One image for every entrypoint: cdi (CLI, controller, apiserver), cdi-importer, cdi-uploadserver and
# cdi-uploadproxy, plus qemu-img and nbdkit (its curl plugin reads ranged HTTP sources in place).
# Build it locally with `bash scripts/image.sh` (podman, no registry needed), or with any Docker
# engine (BuildKit): docker build -t pycdi/pycdi:latest .
#
# Two stages: the first builds the virtual environment, the second holds only the runtime packages and
# that environment, no pip, no compilers, no caches, no docs (about 78 MB of base + the rest).

FROM debian:bookworm-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY cdi ./cdi
COPY importer ./importer
COPY uploadproxy ./uploadproxy
# The secrets are optional: scripts/image.sh passes the host's CA bundle and pip configuration so pip
# trusts PyPI (or the configured index) behind an intercepting proxy; nothing of them stays in a layer.
# pip's cache lives in a cache mount, so a rebuild after a source change downloads nothing again.
RUN --mount=type=secret,id=cabundle,required=false \
    --mount=type=secret,id=pipconf,required=false \
    --mount=type=cache,target=/root/.cache/pip \
    set -eu; \
    if [ -s /run/secrets/cabundle ]; then export PIP_CERT=/run/secrets/cabundle; fi; \
    if [ -s /run/secrets/pipconf ]; then export PIP_CONFIG_FILE=/run/secrets/pipconf; fi; \
    python3 -m venv /opt/pycdi; \
    /opt/pycdi/bin/pip install --disable-pip-version-check --no-compile . ; \
    /opt/pycdi/bin/pip uninstall -y --disable-pip-version-check pip setuptools; \
    # Byte-compile once here: the image runs as a user that cannot write next to the sources.
    /opt/pycdi/bin/python -m compileall -q -j 0 /opt/pycdi/lib >/dev/null; \
    find /opt/pycdi -depth -type d -name tests -path '*/site-packages/*/tests' -prune -exec rm -rf {} +; \
    # zstandard ships two backends; its C one is the default, the 12 MB cffi one is only a fallback.
    rm -f /opt/pycdi/lib/python3.*/site-packages/zstandard/_cffi.*.so \
          /opt/pycdi/lib/python3.*/site-packages/zstandard/backend_cffi.py

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      python3 ca-certificates qemu-utils nbdkit tar gzip xz-utils zstd util-linux \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /var/cache/debconf/*-old /var/lib/dpkg/*-old /var/log/*
COPY --from=build /opt/pycdi /opt/pycdi
ENV PATH=/opt/pycdi/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# Upstream's importer image runs as an unprivileged user; volumes are given to it with fsGroup.
USER 1001
# Every pod spec sets `command` (cdi-importer, cdi-uploadserver, cdi, cdi-uploadproxy); a bare
# `run` of the image is an importer, as upstream's importer image is.
ENTRYPOINT ["cdi-importer"]
