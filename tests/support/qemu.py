"""Thin wrappers over the real `qemu-img` for generating and inspecting test images.

Used by `tests/support/images.py` and its neighbours to build images, and by tests to ask qemu what
an image is (`info`), whether it is consistent (`check`) and what disk content it holds
(`convert_to_raw`). Failures raise `QemuImgError` carrying qemu's own message.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any


class QemuImgError(RuntimeError):
    """qemu-img is missing or exited non-zero."""

    def __init__(self, message: str, returncode: int = -1, stderr: str = "") -> None:
        super().__init__(message)
        self.returncode = returncode
        self.stderr = stderr


def find_qemu_img() -> str:
    found = shutil.which("qemu-img")
    if found is None:
        raise QemuImgError(
            "qemu-img is required to generate test images but is not on PATH; "
            "install it (Debian: apt-get install -y qemu-utils)"
        )
    return found


def qemu_img(
    args: Sequence[str | Path], *, check: bool = True, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `qemu-img <args>` (in `cwd`); with `check`, a non-zero exit raises `QemuImgError`."""
    argv = [find_qemu_img(), *map(str, args)]
    result = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False, cwd=cwd)
    if check and result.returncode != 0:
        raise QemuImgError(
            f"{' '.join(argv)} exited {result.returncode}: {result.stderr.strip()}",
            result.returncode,
            result.stderr,
        )
    return result


def info(path: Path, *, image_format: str | None = None) -> dict[str, Any]:
    """`qemu-img info --output=json` of one image (without following its backing chain)."""
    args: list[str | Path] = ["info", "--output=json"]
    if image_format is not None:
        args += ["-f", image_format]
    parsed: dict[str, Any] = json.loads(qemu_img([*args, path]).stdout)
    return parsed


def check(path: Path) -> subprocess.CompletedProcess[str]:
    """`qemu-img check`; exit 0 clean, 2 corruption found, 3 leaks only (not raised)."""
    return qemu_img(["check", path], check=False)


def convert_to_raw(source: Path, target: Path, *, source_format: str | None = None) -> None:
    args: list[str | Path] = ["convert", "-O", "raw"]
    if source_format is not None:
        args += ["-f", source_format]
    qemu_img([*args, source, target])
