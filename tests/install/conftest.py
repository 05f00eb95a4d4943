"""Fixtures for the install renderer tests: one set of credentials per session (keys take a moment) and the
documents `render_all` makes with them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from cdi.install import InstallOptions, render_all
from cdi.install.tls import Credentials, credentials

NAMESPACE = "cdi-test"
IMAGE = "registry.example/pycdi:1.2.3"
# One moment for the whole session: the credentials are made at it, and tests judge them at it (a clock
# read later, minutes into a long run, would see certificates issued "in the future" of an earlier one).
NOW = datetime.now(UTC)


@pytest.fixture(scope="session")
def creds() -> Credentials:
    return credentials(NAMESPACE, NOW)


@pytest.fixture(scope="session")
def documents(creds: Credentials) -> list[dict[str, Any]]:
    return render_all(InstallOptions(creds, NAMESPACE, IMAGE))


def of_kind(documents: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in documents if d["kind"] == kind}
