"""Comparing operator versions, as upstream's `ShouldTakeUpdatePath` does with semver.

Versions look like `v1.61.0` or `1.61.0-rc.1` (a leading `v` is ignored). A pre-release sorts before its
release. Versions that are not semver cannot be ordered: they never count as a downgrade (an operator built
from a branch, `latest`, still reconciles; a different string still means an upgrade).
"""

from __future__ import annotations

import os
import re
from importlib import metadata

_SEMVER = re.compile(r"v?(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?")

Key = tuple[int, int, int, int, tuple[tuple[int, int | str], ...]]


def semver_key(version: str) -> Key | None:
    """A sort key for `version`, None when it is not semver."""
    found = _SEMVER.fullmatch(version.strip())
    if found is None:
        return None
    major, minor, patch, pre = found.groups()
    # A release (no pre-release) sorts after every pre-release of the same version.
    parts = tuple((0, int(p)) if p.isdigit() else (1, p) for p in pre.split(".")) if pre else ()
    return int(major), int(minor), int(patch), 0 if pre else 1, parts


def is_downgrade(observed: str, operator: str) -> bool:
    """Whether installing `operator` over an installation at `observed` would go backwards."""
    old, new = semver_key(observed), semver_key(operator)
    return old is not None and new is not None and new < old


VERSION_ENV = "OPERATOR_VERSION"  # upstream's operator reads its version from the environment too


def operator_version(environ: dict[str, str] | None = None) -> str:
    """This operator's version: $OPERATOR_VERSION, else the installed pycdi package's version."""
    found = (environ if environ is not None else dict(os.environ)).get(VERSION_ENV)
    if found:
        return found
    try:
        return metadata.version("pycdi")
    except metadata.PackageNotFoundError:
        return "0.0.0"
