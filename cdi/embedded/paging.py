"""List paging for the embedded store: `limit` and the opaque `continue` token, as the API server has them.

A page holds at most `limit` objects in key order (namespace, then name); when more remain, the token
names the resourceVersion of the first page and the last key served. The next page lists what comes
after that key. Unlike etcd, the embedded store keeps no snapshot per resourceVersion, so later pages
show the objects as they are now (an object created meanwhile past the cursor appears, one deleted
disappears) — what a client of a real server sees too once its token has expired and it relists. A
token older than the change log's compaction horizon is `Gone`, as the API server answers 410.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass

from cdi.cluster.errors import BadRequest, Gone
from cdi.cluster.protocol import Object


@dataclass(frozen=True)
class Cursor:
    resource_version: int
    after: tuple[str, str]  # (namespace, name) of the last object served


def encode(cursor: Cursor) -> str:
    raw = json.dumps({"rv": cursor.resource_version, "ns": cursor.after[0], "name": cursor.after[1]})
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode(token: str, compacted: int) -> Cursor:
    """The cursor a token stands for; `BadRequest` when it is not one of ours, `Gone` when too old."""
    try:
        doc = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        cursor = Cursor(int(doc["rv"]), (str(doc["ns"]), str(doc["name"])))
    except (ValueError, KeyError, TypeError) as e:
        raise BadRequest(f"continue key is not valid: {e}") from e
    if cursor.resource_version < compacted:
        raise Gone("The provided continue parameter is too old to display a consistent list result. "
                   "You can start a new list without the continue parameter.")
    return cursor


def page(items: list[Object], limit: int | None, cursor: Cursor | None,
         resource_version: int) -> tuple[list[Object], str, int]:
    """(this page's items, the next token or "", the list's resourceVersion)."""
    if limit is not None and limit < 0:
        raise BadRequest(f"limit must be a non-negative integer, got {limit}")
    ordered = sorted(items, key=_key)
    if cursor is not None:
        ordered = [obj for obj in ordered if _key(obj) > cursor.after]
        resource_version = cursor.resource_version
    if not limit or len(ordered) <= limit:
        return ordered, "", resource_version
    shown = ordered[:limit]
    return shown, encode(Cursor(resource_version, _key(shown[-1]))), resource_version


def _key(obj: Object) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")
