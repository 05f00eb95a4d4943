"""qemu-img, behind pure argument builders and output parsers plus a thin async wrapper.

Differences from upstream, on purpose: the input format is always passed with `-f` (never probed, so
a raw image holding a qcow2 header cannot be reinterpreted); `info` runs with an address-space and
CPU limit as well as a timeout; `check` runs before conversion because qemu-img converts a truncated
qcow2 without complaint. The preallocation fallback chain is upstream's.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cdi.toolrun import Completed, Limits, ToolMissing, ToolTimeout, run_tool
from importer.errors import ConfigurationError, InvalidImage, ToolFailure

QEMU_IMG = "qemu-img"
INFO_TIMEOUT = 30.0
INFO_LIMITS = Limits(address_space=1 << 30, cpu_seconds=30)
CHECK_TIMEOUT = 300.0
CHECK_LIMITS = Limits(address_space=2 << 30, cpu_seconds=300)
PREALLOCATION_CHAIN: tuple[tuple[str, ...], ...] = (
    ("-o", "preallocation=falloc"), ("-o", "preallocation=full"), ("-S", "0"))
CHECKABLE_FORMATS = frozenset({"qcow2", "vdi", "vhdx", "vmdk"})
_PROGRESS = re.compile(r"\((\d{1,3}\.\d\d)/100%\)")


@dataclass(frozen=True)
class ImageInfo:
    format: str
    virtual_size: int
    backing_filename: str | None
    data_file: str | None
    encrypted: bool
    corrupt: bool
    extent_files: tuple[str, ...] = field(default_factory=tuple)
    raw: dict[str, Any] = field(default_factory=dict, compare=False)


def info_argv(path: str, fmt: str) -> list[str]:
    return [QEMU_IMG, "info", "--output=json", "-f", fmt, path]


def check_argv(path: str, fmt: str) -> list[str]:
    return [QEMU_IMG, "check", "--output=json", "-f", fmt, path]


def convert_argv(src: str, fmt: str, dst: str, *, cache_mode: str = "writeback",
                 preallocation: tuple[str, ...] = (), existing_target: bool = False) -> list[str]:
    argv = [QEMU_IMG, "convert", *preallocation, "-t", cache_mode, "-p", "-f", fmt, "-O", "raw"]
    if existing_target:
        argv.append("-n")
    return [*argv, src, dst]


def parse_info(text: str, path: str) -> ImageInfo:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise InvalidImage(f"Invalid json for image {path}: {e}") from e
    if not isinstance(doc, dict) or "virtual-size" not in doc or "format" not in doc:
        raise InvalidImage(f"Invalid json for image {path}: missing format or virtual-size")
    specific = (doc.get("format-specific") or {}).get("data") or {}
    extents = tuple(str(e.get("filename", "")) for e in specific.get("extents", []) if isinstance(e, dict))
    return ImageInfo(
        format=str(doc["format"]),
        virtual_size=int(doc["virtual-size"]),
        backing_filename=doc.get("backing-filename") or doc.get("full-backing-filename"),
        data_file=specific.get("data-file"),
        encrypted=bool(doc.get("encrypted")) or "encrypt" in specific,
        corrupt=bool(specific.get("corrupt")),
        extent_files=extents,
        raw=doc,
    )


def parse_progress(token: str) -> float | None:
    match = _PROGRESS.search(token)
    return float(match.group(1)) if match else None


async def _run(argv: list[str], *, timeout: float | None, limits: Limits | None = None,
               on_output: Callable[[str], None] | None = None) -> Completed:
    try:
        return await run_tool(argv, timeout=timeout, limits=limits, on_output=on_output)
    except ToolMissing as e:
        raise ConfigurationError(f"{e}: the importer needs qemu-img (Debian/Ubuntu: apt-get install qemu-utils)") from e


def _failure(result: Completed) -> str:
    return f"qemu-img execution failed: {result.stderr.strip()}: exit status {result.returncode}"


class QemuImg:
    """The async wrapper the pipeline calls; tests may substitute any object with these methods."""

    async def info(self, path: str, fmt: str) -> ImageInfo:
        try:
            result = await _run(info_argv(path, fmt), timeout=INFO_TIMEOUT, limits=INFO_LIMITS)
        except ToolTimeout as e:
            raise InvalidImage(f"qemu-img info gave up on the image: {e}") from e
        if result.returncode != 0:
            raise InvalidImage(_failure(result))
        return parse_info(result.stdout, path)

    async def check(self, path: str, fmt: str) -> None:
        """Refuse images with corruptions (exit 2) or where the check could not finish (exit 1).
        Leaked clusters (exit 3) are harmless for a read-only conversion."""
        if fmt not in CHECKABLE_FORMATS:
            return
        try:
            result = await _run(check_argv(path, fmt), timeout=CHECK_TIMEOUT, limits=CHECK_LIMITS)
        except ToolTimeout as e:
            raise InvalidImage(f"qemu-img check gave up on the image: {e}") from e
        if result.returncode in (0, 3, 63):
            return
        summary = _check_summary(result.stdout)
        raise InvalidImage(f"image is corrupt or truncated ({summary}); qemu-img check exit status "
                           f"{result.returncode}")

    async def convert(self, src: str, fmt: str, dst: str, *, cache_mode: str, preallocate: bool,
                      existing_target: bool, on_progress: Callable[[float], None]) -> None:
        def output(token: str) -> None:
            value = parse_progress(token)
            if value is not None:
                on_progress(value)

        chain: tuple[tuple[str, ...], ...] = ((),)
        if preallocate:
            # qemu-img refuses creation options (-o) on an existing target such as a block device.
            chain = PREALLOCATION_CHAIN[-1:] if existing_target else PREALLOCATION_CHAIN
        for option in chain:
            argv = convert_argv(src, fmt, dst, cache_mode=cache_mode, preallocation=option,
                                existing_target=existing_target)
            result = await _run(argv, timeout=None, on_output=output)
            if result.returncode == 0:
                return
            if "Unsupported preallocation mode" not in result.stderr:
                break
        raise ToolFailure(f"could not convert image to raw: {_failure(result)}")


def _check_summary(stdout: str) -> str:
    try:
        doc = json.loads(stdout)
    except json.JSONDecodeError:
        return "no report"
    parts = [f"{doc[k]} {k.replace('-', ' ')}" for k in ("corruptions", "check-errors") if doc.get(k)]
    return ", ".join(parts) or "no details"
