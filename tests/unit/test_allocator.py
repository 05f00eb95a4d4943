"""`importer.allocator.keep_freed_memory`, in a fresh interpreter each: after it, 20 MiB of 1 MiB buffers
freed and allocated again (what the importer's download chunks do, a few at a time) reuse their pages;
with glibc's defaults the first ones are mapped and unmapped and the next ones faulted in afresh."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import resource, sys
from importer.allocator import keep_freed_memory
if sys.argv[1] == "tuned":
    assert keep_freed_memory()
source = memoryview(bytearray(b"x" * (1 << 20)))
held = [bytes(source) for _ in range(20)]
del held
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
held = [bytes(source) for _ in range(20)]
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""
PAGES = 20 * (1 << 20) // 4096


def _second_round_faults(mode: str) -> int:
    done = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, check=True)
    return int(done.stdout)


def test_freed_buffers_are_reused_instead_of_faulted_in_again() -> None:
    assert _second_round_faults("tuned") < PAGES // 10


def test_without_it_the_same_buffers_fault_their_pages_in_again() -> None:
    # what the tuning is for (if a libc ever reused them by default, the tuning would be moot: say so)
    assert _second_round_faults("default") > PAGES // 2
