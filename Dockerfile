# One image for every entrypoint (cdi, cdi-importer, and the controller, upload server, upload proxy
# and cloner as they arrive), plus qemu-img. Build: docker build -t pycdi .
FROM debian:bookworm-slim

RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      python3 python3-venv ca-certificates qemu-utils qemu-block-extra nbdkit tar gzip xz-utils zstd util-linux \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY pyproject.toml README.md ./
COPY cdi ./cdi
COPY importer ./importer
COPY uploadproxy ./uploadproxy
RUN python3 -m venv /opt/pycdi \
 && /opt/pycdi/bin/pip install --no-cache-dir . \
 && rm -rf /src

ENV PATH=/opt/pycdi/bin:$PATH
# Upstream's importer image runs as an unprivileged user; volumes are given to it with fsGroup.
USER 1001
ENTRYPOINT ["cdi-importer"]
