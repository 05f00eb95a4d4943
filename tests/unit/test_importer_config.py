"""Parsing upstream's env-var contract."""

from decimal import Decimal
from pathlib import Path

import pytest

from importer.checksum import parse_checksum
from importer.config import load_config, parse_go_bool
from importer.errors import ConfigurationError

BASE = {"IMPORTER_SOURCE": "http", "IMPORTER_ENDPOINT": "http://x/y", "CDI_DATA_PATH": "/tmp"}


def test_full_contract() -> None:
    config = load_config({**BASE, "IMPORTER_IMAGE_SIZE": "1Gi", "FILESYSTEM_OVERHEAD": "0.055",
                          "PREALLOCATION": "True", "INSECURE_TLS": "1", "IMPORTER_ACCESS_KEY_ID": "a",
                          "IMPORTER_SECRET_KEY": "b", "IMPORTER_EXTRA_HEADER_0": "X-A: 1",
                          "IMPORTER_EXTRA_HEADER_1": "X-B: 2", "OWNER_UID": "u", "CACHE_MODE": "TRYNONE",
                          "CDI_SCRATCH_PATH": "/s", "CDI_TERMINATION_LOG": "/t"})
    assert config.image_size == 1 << 30
    assert config.filesystem_overhead == Decimal("0.055")
    assert config.preallocation and config.insecure_tls and config.has_credentials and config.cache_mode_try_none
    assert config.extra_headers == ("X-A: 1", "X-B: 2")
    assert (config.data_path, config.scratch_path, config.termination_log) == (Path("/tmp"), Path("/s"), Path("/t"))


def test_defaults_are_upstreams() -> None:
    config = load_config({"IMPORTER_SOURCE": "none"})
    assert config.content_type == "kubevirt"
    assert config.scratch_path is None  # no scratch unless the pod mounts one and says where
    assert config.termination_log == Path("/dev/termination-log")
    assert config.metrics_addr == ":8443"
    assert not config.has_credentials


@pytest.mark.parametrize(("environ", "message"), [
    ({"IMPORTER_SOURCE": "foo"}, "Unknown data source: foo"),
    ({"IMPORTER_SOURCE": ""}, "Unknown data source: "),
    ({**BASE, "PREALLOCATION": "maybe"}, 'PREALLOCATION environment variable is with a wrong value "maybe"'),
    ({**BASE, "IMPORTER_IMAGE_SIZE": "lots"}, "IMPORTER_IMAGE_SIZE is not a valid quantity"),
    ({**BASE, "IMPORTER_CONTENTTYPE": "iso"}, "Unknown content type: iso"),
])
def test_bad_configuration(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message.replace("(", r"\(")):
        load_config(environ)


def test_go_bool() -> None:
    assert [parse_go_bool("X", v) for v in ("t", "TRUE", "0", "False", "")] == [True, True, False, False, False]


@pytest.mark.parametrize(("spec", "message"), [
    ("nocolon", "invalid checksum format: expected 'algorithm:hash', got 'nocolon'"),
    ("sha256:", "checksum hash value cannot be empty"),
    ("crc32:abcd", "unsupported hash algorithm 'crc32'"),
    ("sha256:abc", "invalid sha256 hash length: expected 64 hex characters, got 3"),
    ("md5:" + "z" * 32, "checksum hash is not valid hexadecimal"),
])
def test_bad_checksums(spec: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        parse_checksum(spec)


def test_checksum_is_normalised() -> None:
    spec = parse_checksum(" SHA256 : " + "AB" * 32)
    assert spec is not None and (spec.algorithm, spec.expected) == ("sha256", "ab" * 32)
