"""The streaming tests reuse the importer suite's subprocess runner (`run_importer`)."""

from tests.importer.conftest import run_importer

__all__ = ["run_importer"]
