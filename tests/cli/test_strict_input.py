"""Strict API input through the CLI, as kubectl and a real API server give it: the store's admission
refuses unknown fields and impossible sizes, and the CLI prints the refusal on one line per cause."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.cli.conftest import Run
from tests.cli.manifests import HTTP_DV

WriteFile = Callable[[str, str], str]


def test_unknown_field_is_a_strict_decoding_error(cdi: Run, write_file: WriteFile) -> None:
    bogus = HTTP_DV.replace("      url:", "      bogus: 1\n      url:")
    assert "bogus" in bogus
    result = cdi("apply", "-f", write_file("bogus.yaml", bogus))
    assert result.code == 1
    assert result.err == ('error: datavolume.cdi.kubevirt.io/fedora: DataVolume in version "v1beta1" cannot be '
                          'handled as a DataVolume: strict decoding error: unknown field "spec.source.http.bogus"\n')
    assert cdi("get", "dv", "-o", "name").out == ""


@pytest.mark.parametrize("size", ["999999999999999999999999Ei", "0", "-1Gi"])
def test_impossible_sizes_are_refused_before_anything_is_stored(cdi: Run, write_file: WriteFile, size: str) -> None:
    result = cdi("apply", "-f", write_file("huge.yaml", HTTP_DV.replace("storage: 10Gi", f"storage: {size}")))
    assert result.code == 1 and len(result.error_lines) == 1
    assert result.err.startswith("error: datavolume.cdi.kubevirt.io/fedora: spec.pvc.resources.requests.storage") \
        or result.err.startswith("error: datavolume.cdi.kubevirt.io/fedora: spec.storage.resources.requests.storage")
    assert cdi("get", "dv", "-o", "name").out == ""
