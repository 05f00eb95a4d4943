"""The GCS source end to end: images uploaded to gcp-storage-emulator (on loopback) and imported by
the real `cdi-importer`, through the STORAGE_EMULATOR_HOST override and through an http(s)://host
URL; anonymous and service-account reads; integrity against md5Hash/crc32c and a user checksum."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import google_crc32c
import pytest

from tests.importer.conftest import Runner
from tests.objectstore.checks import assert_imported, assert_refused, digest_of, flipped_copy
from tests.support.catalog import ImageSet, sha256_file
from tests.support.gcs import GcsEmulator

BUCKET = "images"
PRIVATE = "private-images"


def gcs_env(url: str, emulator: GcsEmulator | None = None, **extra: str) -> dict[str, str]:
    env = {"IMPORTER_SOURCE": "gcs", "IMPORTER_ENDPOINT": url, **extra}
    if emulator is not None:
        env["STORAGE_EMULATOR_HOST"] = emulator.host
    return env


@pytest.mark.parametrize("name", ["disk.qcow2", "disk.raw.xz"])
def test_gs_url_through_the_emulator_override_is_byte_identical(name: str, images: ImageSet, gcs: GcsEmulator,
                                                                run_importer: Runner) -> None:
    gcs.bucket(BUCKET)
    resource = gcs.upload(BUCKET, f"plain/{name}", images.path(name))
    assert resource["md5Hash"] == base64.b64encode(hashlib.md5(images.path(name).read_bytes()).digest()).decode()
    run = run_importer(gcs_env(f"gs://{BUCKET}/plain/{name}", gcs), scratch=False)  # no scratch volume at all
    assert_imported(run, images)
    assert f"match GCS md5Hash md5:{digest_of(images.path(name), 'md5')}" in run.log
    assert "reading anonymously" in run.log


def test_http_url_names_the_api_host(images: ImageSet, gcs: GcsEmulator, run_importer: Runner) -> None:
    gcs.bucket(BUCKET)
    gcs.upload(BUCKET, "http/disk.qcow2.zst", images.path("disk.qcow2.zst"))
    assert_imported(run_importer(gcs_env(f"{gcs.url}/{BUCKET}/http/disk.qcow2.zst")), images)


def test_service_account_key_reads_a_private_bucket(images: ImageSet, gcs: GcsEmulator, tmp_path: Path,
                                                    run_importer: Runner) -> None:
    gcs.bucket(PRIVATE, private=True)
    gcs.upload(PRIVATE, "disk.qcow2", images.path("disk.qcow2"))
    url = f"gs://{PRIVATE}/disk.qcow2"

    anonymous = run_importer(gcs_env(url, gcs))
    assert anonymous.returncode == 1
    assert anonymous.message is not None
    assert anonymous.message.message == (
        f'Unable to connect to gcs data source: could not get gcs object "{PRIVATE}/disk.qcow2": 401 Unauthorized: '
        "Anonymous caller does not have storage.objects.get access to the Google Cloud Storage object.")
    assert (anonymous.message.reason, anonymous.message.retryable) == ("ImportSourceUnavailable", True)

    key = gcs.service_account_key(tmp_path / "credentials.json")
    tokens, reads = gcs.token_requests, gcs.authorized_reads
    run = run_importer(gcs_env(url, gcs, GOOGLE_APPLICATION_CREDENTIALS=str(key)))
    assert_imported(run, images)
    assert (gcs.token_requests, gcs.authorized_reads) == (tokens + 1, reads + 1)
    assert "reading as service account importer@pycdi-tests.iam.gserviceaccount.com" in run.log


def test_a_key_the_token_endpoint_refuses(gcs: GcsEmulator, tmp_path: Path, run_importer: Runner) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = json.loads(gcs.service_account_key(tmp_path / "good.json").read_text())
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key["private_key"] = stranger.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                serialization.NoEncryption()).decode()
    (tmp_path / "bad.json").write_text(json.dumps(key))
    run = run_importer(gcs_env(f"gs://{PRIVATE}/disk.qcow2", gcs, GOOGLE_APPLICATION_CREDENTIALS=str(tmp_path / "bad.json")))
    assert run.returncode == 1
    assert run.message is not None and run.message.reason == "ImportSourceUnavailable"
    assert run.message.message.startswith(
        "Unable to connect to gcs data source: could not get an access token for service account "
        f"importer@pycdi-tests.iam.gserviceaccount.com from {gcs.url}/token: 400 Bad Request: ")
    assert "invalid_grant" in run.message.message


def test_tampered_object_fails_its_md5(images: ImageSet, gcs: GcsEmulator, tmp_path: Path,
                                       run_importer: Runner) -> None:
    source = images.path("disk.qcow2.xz")
    gcs.bucket(BUCKET)
    gcs.upload(BUCKET, "tampered/disk.qcow2.xz", source)
    gcs.tamper(BUCKET, "tampered/disk.qcow2.xz", offset=4096)
    run = run_importer(gcs_env(f"gs://{BUCKET}/tampered/disk.qcow2.xz", gcs))
    seen = digest_of(flipped_copy(source, tmp_path / "x", offset=4096), "md5")
    assert_refused(run, "md5", digest_of(source, "md5"), seen)
    assert "GCS md5Hash of gs://images/tampered/disk.qcow2.xz" in run.message.message


def test_composite_object_is_checked_by_its_crc32c(images: ImageSet, gcs: GcsEmulator, tmp_path: Path,
                                                   run_importer: Runner) -> None:
    source = images.path("disk.qcow2")
    gcs.bucket(BUCKET)
    gcs.upload(BUCKET, "composite/disk.qcow2", source)
    gcs.forget_md5(BUCKET, "composite/disk.qcow2")
    url = f"gs://{BUCKET}/composite/disk.qcow2"
    good = run_importer(gcs_env(url, gcs))
    assert_imported(good, images)
    assert f"match GCS crc32c crc32c:{google_crc32c.Checksum(source.read_bytes()).digest().hex()}" in good.log

    gcs.tamper(BUCKET, "composite/disk.qcow2")
    expected = google_crc32c.Checksum(source.read_bytes()).digest().hex()
    seen = google_crc32c.Checksum(flipped_copy(source, tmp_path / "x").read_bytes()).digest().hex()
    assert_refused(run_importer(gcs_env(url, gcs)), "crc32c", expected, seen)


def test_user_checksum_is_honoured(images: ImageSet, gcs: GcsEmulator, run_importer: Runner) -> None:
    source = images.path("disk.raw.zst")
    gcs.bucket(BUCKET)
    gcs.upload(BUCKET, "user/disk.raw.zst", source)
    url = f"gs://{BUCKET}/user/disk.raw.zst"
    assert_imported(run_importer(gcs_env(url, gcs, IMPORTER_CHECKSUM=f"sha256:{sha256_file(source)}")), images)
    wrong = "f" * 64
    assert_refused(run_importer(gcs_env(url, gcs, IMPORTER_CHECKSUM=f"sha256:{wrong}")), "sha256", wrong,
                   sha256_file(source))


def test_missing_object(gcs: GcsEmulator, run_importer: Runner) -> None:
    gcs.bucket(BUCKET)
    run = run_importer(gcs_env(f"gs://{BUCKET}/no/such.img", gcs))
    assert run.returncode == 1
    assert run.message is not None
    assert run.message.message == f'Unable to connect to gcs data source: could not get gcs object "{BUCKET}/no/such.img": ' \
                                  "404 Not Found"
