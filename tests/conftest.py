"""Session fixtures shared by every test: a test PKI, the generated images, and nginx serving them.

The logic lives in `tests/support/`; this file only wires it into pytest and guarantees the
started nginx is stopped however the session ends.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.catalog import ImageSet, sha256_file
from tests.support.images import make_image_set
from tests.support.nginx import NginxServer
from tests.support.tls import TestPKI, make_pki

# Fixtures for suites that run on both Cluster backends (the embedded store and a real API server).
pytest_plugins = ("tests.support.backends",)

# Bytes/s on Location.SLOW. nginx sends the first second's worth at once, so a download of N bytes
# lasts about ceil(N / rate) - 1 seconds: disk.qcow2 (2.4 MiB) takes 2 s.
NGINX_SLOW_RATE = 1024 * 1024


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    """A CA plus a server certificate for 127.0.0.1, ::1 and localhost (PEM files)."""
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def images(tmp_path_factory: pytest.TempPathFactory) -> ImageSet:
    """Every generated test image, in one directory, catalogued by file name."""
    return make_image_set(tmp_path_factory.mktemp("images"))


@pytest.fixture(scope="session")
def nginx(tmp_path_factory: pytest.TempPathFactory, pki: TestPKI, images: ImageSet) -> Iterator[NginxServer]:
    """A running nginx whose document root is the images directory (all four listeners)."""
    with NginxServer(images.directory, tmp_path_factory.mktemp("nginx"), pki, slow_rate=NGINX_SLOW_RATE) as server:
        yield server


@pytest.fixture(scope="session")
def file_sha256() -> Callable[[Path], str]:
    """Hex sha256 of a file's contents."""
    return sha256_file
