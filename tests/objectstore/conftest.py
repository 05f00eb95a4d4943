"""Fixtures for the S3 and GCS source tests: moto's S3 (HTTP and HTTPS) and the GCS emulator on
loopback for the whole session, stopped at its end; the real importer is run by `run_importer`,
shared with the HTTP source's tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

pytest.register_assert_rewrite("tests.objectstore.checks")

from tests.importer.conftest import run_importer  # noqa: E402 (after the rewrite hook)
from tests.support.gcs import GcsEmulator  # noqa: E402
from tests.support.s3 import MotoS3  # noqa: E402
from tests.support.tls import TestPKI  # noqa: E402

__all__ = ["gcs", "run_importer", "s3"]


@pytest.fixture(scope="session")
def s3(pki: TestPKI) -> Iterator[MotoS3]:
    with MotoS3(pki) as server:
        yield server


@pytest.fixture(scope="session")
def gcs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GcsEmulator]:
    with GcsEmulator(tmp_path_factory.mktemp("gcs")) as server:
        yield server
