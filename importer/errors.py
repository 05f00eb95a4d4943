"""Every way an import can fail, each with a user-facing reason and a retryable flag.

    ImportFailure                       reason, retryable, message
    ├── ConfigurationError              InvalidConfiguration     bad env var / unknown source
    ├── SourceUnavailable               ImportSourceUnavailable  connect error, HTTP status (retryable)
    │   └── ImagePullFailed             ImagePullFailed          registry: unknown tag, denied, TLS (retryable)
    ├── TransferInterrupted             ImagePullFailed          stream cut short, idle timeout (retryable)
    ├── ChecksumMismatch                ChecksumError            digest differs from the one asked for
    ├── InvalidImage                    InvalidImage             corrupt, truncated, unsupported format
    ├── UnsafeImage                     UnsafeImage              backing file, data file, encryption
    ├── UnsafeArchive                   UnsafeArchive            tar member escapes the target
    ├── ImageTooLarge                   ImageTooLarge            virtual or decompressed size > target
    ├── NoSpace                         NoSpace                  ENOSPC/EDQUOT while writing
    └── ToolFailure                     ToolFailed               qemu-img failed for another reason

Foreign exceptions (aiohttp, OSError, qemu-img exit codes) are translated into these where they are
caught, with `raise ... from e`. Messages are written for someone reading `cdi describe` output, and
keep upstream's wording where the controller's known-message table relies on it (e.g. "is larger than
the reported available storage" and "no space left on device" become "DataVolume too small to contain
image").
"""

from __future__ import annotations


class ImportFailure(Exception):
    reason = "ImportFailed"
    retryable = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigurationError(ImportFailure):
    reason = "InvalidConfiguration"


class SourceUnavailable(ImportFailure):
    reason = "ImportSourceUnavailable"
    retryable = True


class ImagePullFailed(SourceUnavailable):
    """Upstream's reason for any registry pull failure; messages start "failed to pull image"."""

    reason = "ImagePullFailed"


class TransferInterrupted(ImportFailure):
    reason = "ImagePullFailed"
    retryable = True


class ChecksumMismatch(ImportFailure):
    reason = "ChecksumError"


class InvalidImage(ImportFailure):
    reason = "InvalidImage"


class UnsafeImage(ImportFailure):
    reason = "UnsafeImage"


class UnsafeArchive(ImportFailure):
    reason = "UnsafeArchive"


class ImageTooLarge(ImportFailure):
    reason = "ImageTooLarge"


class NoSpace(ImportFailure):
    reason = "NoSpace"


class ToolFailure(ImportFailure):
    reason = "ToolFailed"
    retryable = True


def too_large(virtual_size: int, available: int) -> ImageTooLarge:
    """Upstream's wording, which the controller turns into "DataVolume too small to contain image"."""
    return ImageTooLarge(f"virtual image size {virtual_size} is larger than the reported available storage "
                         f"{available}. A larger PVC is required")
