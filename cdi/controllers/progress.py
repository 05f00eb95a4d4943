"""Scrapes a worker pod's progress metric the way upstream's DataVolume controller does:
`GET https://<podIP>:8443/metrics`, certificate not verified (the importer's is self-signed and
throwaway), 2 s timeout, and the `kubevirt_cdi_*_progress_total{ownerUID=...}` line parsed."""

from __future__ import annotations

import ssl
from typing import Protocol

import aiohttp

from cdi.contracts.metrics import METRICS_PATH, parse_progress

METRICS_PORT = 8443
TIMEOUT = 2.0


class ProgressScraper(Protocol):
    async def scrape(self, pod_ip: str, owner_uid: str) -> float | None: ...


class HttpsProgressScraper:
    def __init__(self) -> None:
        self._context = ssl.create_default_context()
        self._context.check_hostname = False
        self._context.verify_mode = ssl.CERT_NONE

    async def scrape(self, pod_ip: str, owner_uid: str) -> float | None:
        url = f"https://{pod_ip}:{METRICS_PORT}{METRICS_PATH}"
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT)) as session, \
                    session.get(url, ssl=self._context) as response:
                return parse_progress(await response.text(), owner_uid)
        except (TimeoutError, aiohttp.ClientError, OSError):
            return None
