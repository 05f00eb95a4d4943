"""Blank disks (IMPORTER_SOURCE=none), as upstream's handleEmptyImage: a sparse raw file sized to the
usable space of a Filesystem volume, or nothing at all on a Block volume unless preallocation asks
for zeros to be written. Called by `importer.main`."""

from __future__ import annotations

import logging
import os

from cdi.sizing import usable_space
from importer.blockio import no_space_guard, preallocate, write_zeros
from importer.errors import ConfigurationError, ImportFailure
from importer.pipeline import ImportOutcome, ImportRequest

log = logging.getLogger(__name__)


def create_blank(request: ImportRequest) -> ImportOutcome:
    target = request.target
    if request.archive:
        raise ConfigurationError("Cannot create empty disk with content type archive")
    if target.block:
        if request.preallocate:
            fd = target.open_for_write()
            try:
                write_zeros(fd, 0, target.available)
                os.fsync(fd)
            except OSError as e:
                raise ImportFailure(f"Could not preallocate blank block volume at {target.data_path}: "
                                    f"{no_space_guard(e, str(target.data_path))}") from e
            finally:
                os.close(fd)
        return ImportOutcome(request.preallocate, target.available, "blank")
    size = target.available if request.image_size is None else min(target.available, request.image_size)
    if request.image_size is not None and size < request.image_size:
        log.warning("Available space less than requested size, creating blank image sized to available space")
    disk_size = usable_space(request.overhead, size)
    target.clean()
    fd = target.open_for_write()
    try:
        os.ftruncate(fd, disk_size)
        if request.preallocate:
            preallocate(fd, disk_size)
        os.fsync(fd)
    except OSError as e:
        target.discard()
        raise no_space_guard(e, str(target.disk_path)) from e
    finally:
        os.close(fd)
    target.commit()
    return ImportOutcome(request.preallocate, disk_size, "blank")
