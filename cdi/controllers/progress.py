"""Scrapes a worker pod's progress metric the way upstream's DataVolume controller does:
`GET https://<podIP>:8443/metrics`, certificate not verified (the importer's is self-signed and
throwaway), 2 s timeout, and the `kubevirt_cdi_*_progress_total{ownerUID=...}` line parsed.

`read` (ours) returns the same page's byte counters too (`pycdi_transfer_bytes_*`, served by importers,
upload servers and clone source pods), from which the DataVolume controllers compute rate, ETA and stalls
(`cdi.controllers.progresswatch`). `TransferScraper` is the richer protocol; a scraper that only knows
percentages (`ProgressScraper`) still drives `status.progress`."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import aiohttp

from cdi.contracts.metrics import (
    METRICS_PATH,
    TRANSFER_BYTES_DONE,
    TRANSFER_BYTES_TOTAL,
    parse_bytes,
    parse_progress,
)

METRICS_PORT = 8443
TIMEOUT = 2.0


@dataclass(frozen=True)
class ProgressPage:
    """What one scrape found for one owner: any of the three may be missing."""

    percent: float | None
    done: int | None
    total: int | None


def parse_page(text: str, owner_uid: str) -> ProgressPage:
    return ProgressPage(parse_progress(text, owner_uid), parse_bytes(text, TRANSFER_BYTES_DONE, owner_uid),
                        parse_bytes(text, TRANSFER_BYTES_TOTAL, owner_uid))


class ProgressScraper(Protocol):
    async def scrape(self, pod_ip: str, owner_uid: str) -> float | None: ...


@runtime_checkable
class TransferScraper(Protocol):
    async def scrape(self, pod_ip: str, owner_uid: str) -> float | None: ...

    async def read(self, pod_ip: str, owner_uid: str) -> ProgressPage | None: ...


async def read_page(scraper: ProgressScraper, pod_ip: str, owner_uid: str) -> ProgressPage | None:
    """One scrape: the whole page from a `TransferScraper`, only the percentage from any other."""
    if isinstance(scraper, TransferScraper):
        return await scraper.read(pod_ip, owner_uid)
    percent = await scraper.scrape(pod_ip, owner_uid)
    return ProgressPage(percent, None, None) if percent is not None else None


class HttpsProgressScraper:
    def __init__(self, port: int = METRICS_PORT) -> None:
        self._port = port
        self._context = ssl.create_default_context()
        self._context.check_hostname = False
        self._context.verify_mode = ssl.CERT_NONE

    async def scrape(self, pod_ip: str, owner_uid: str) -> float | None:
        page = await self.read(pod_ip, owner_uid)
        return page.percent if page is not None else None

    async def read(self, pod_ip: str, owner_uid: str) -> ProgressPage | None:
        url = f"https://{pod_ip}:{self._port}{METRICS_PATH}"
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT)) as session, \
                    session.get(url, ssl=self._context) as response:
                return parse_page(await response.text(), owner_uid)
        except (TimeoutError, aiohttp.ClientError, OSError):
            return None
