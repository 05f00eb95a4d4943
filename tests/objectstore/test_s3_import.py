"""The S3 source end to end: images uploaded to moto (in server mode, on loopback) and imported by
the real `cdi-importer`; integrity against the object's ETag and checksums, a user checksum, TLS
with a custom CA, and credentials refused by a moto that checks them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.importer.conftest import Runner
from tests.objectstore.checks import assert_imported, assert_refused, digest_of, flipped_copy
from tests.support.catalog import ImageSet, sha256_file
from tests.support.s3 import MotoS3, StrictMotoS3
from tests.support.tls import TestPKI

BUCKET = "images"
KEYS = {"IMPORTER_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE",
        "IMPORTER_SECRET_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}


def s3_env(url: str, **extra: str) -> dict[str, str]:
    return {"IMPORTER_SOURCE": "s3", "IMPORTER_ENDPOINT": url, **KEYS, **extra}


@pytest.mark.parametrize("name", ["disk.raw", "disk.qcow2", "disk.qcow2.xz"])
def test_import_is_byte_identical_and_checked_against_the_etag(name: str, images: ImageSet, s3: MotoS3,
                                                               run_importer: Runner) -> None:
    s3.upload(BUCKET, f"plain/{name}", images.path(name))
    run = run_importer(s3_env(s3.url(BUCKET, f"plain/{name}")), scratch=False)  # no scratch volume at all
    assert_imported(run, images)
    assert f"match the ETag md5:{digest_of(images.path(name), 'md5')}" in run.log


def test_https_endpoint_with_the_ca_from_the_cert_dir(images: ImageSet, s3: MotoS3, pki: TestPKI,
                                                      tmp_path: Path, run_importer: Runner) -> None:
    s3.upload(BUCKET, "tls/disk.qcow2", images.path("disk.qcow2"))
    certs = tmp_path / "certs"
    certs.mkdir()
    shutil.copy(pki.ca_cert, certs / "ca.pem")
    assert_imported(run_importer(s3_env(s3.url(BUCKET, "tls/disk.qcow2", tls=True), IMPORTER_CERT_DIR=str(certs))),
                    images)
    untrusted = run_importer(s3_env(s3.url(BUCKET, "tls/disk.qcow2", tls=True)))
    assert untrusted.returncode == 1
    assert untrusted.message is not None and untrusted.message.reason == "ImportSourceUnavailable"
    assert "could not get s3 object" in untrusted.message.message
    assert "CERTIFICATE_VERIFY_FAILED" in untrusted.message.message


def test_anonymous_read_of_a_public_object(images: ImageSet, s3: MotoS3, run_importer: Runner) -> None:
    s3.upload(BUCKET, "public/disk.raw.xz", images.path("disk.raw.xz"), ACL="public-read")
    run = run_importer({"IMPORTER_SOURCE": "s3", "IMPORTER_ENDPOINT": s3.url(BUCKET, "public/disk.raw.xz")})
    assert_imported(run, images)
    assert "reading anonymously" in run.log


def test_anonymous_read_of_a_private_object_says_it_was_anonymous(images: ImageSet, s3: MotoS3,
                                                                   run_importer: Runner) -> None:
    s3.upload(BUCKET, "private/disk.raw.xz", images.path("disk.raw.xz"))
    run = run_importer({"IMPORTER_SOURCE": "s3", "IMPORTER_ENDPOINT": s3.url(BUCKET, "private/disk.raw.xz")})
    assert run.returncode == 1
    assert run.message is not None
    assert run.message.message == ('Unable to connect to s3 data source: could not get s3 object: '
                                   '"images/private/disk.raw.xz": 403: Forbidden (the request was anonymous: '
                                   'no accessKeyId/secretKey were given)')


def test_tampered_single_part_object_fails_the_etag(images: ImageSet, s3: MotoS3, tmp_path: Path,
                                                    run_importer: Runner) -> None:
    source = images.path("disk.qcow2")
    s3.upload(BUCKET, "tampered/etag.qcow2", source)
    s3.tamper(BUCKET, "tampered/etag.qcow2")
    run = run_importer(s3_env(s3.url(BUCKET, "tampered/etag.qcow2")))
    assert_refused(run, "md5", digest_of(source, "md5"), digest_of(flipped_copy(source, tmp_path / "x"), "md5"))
    assert "the ETag of s3://images/tampered/etag.qcow2" in run.message.message


def test_tampered_object_fails_its_sha256_checksum(images: ImageSet, s3: MotoS3, tmp_path: Path,
                                                   run_importer: Runner) -> None:
    source = images.path("disk.raw.gz")
    s3.upload(BUCKET, "tampered/sha.raw.gz", source, ChecksumAlgorithm="SHA256")
    s3.tamper(BUCKET, "tampered/sha.raw.gz")
    run = run_importer(s3_env(s3.url(BUCKET, "tampered/sha.raw.gz")))
    seen = digest_of(flipped_copy(source, tmp_path / "x"), "sha256")
    assert_refused(run, "sha256", sha256_file(source), seen)
    assert "x-amz-checksum-sha256" in run.message.message


def test_sse_kms_object_is_checked_by_its_crc32_not_its_etag(images: ImageSet, s3: MotoS3, run_importer: Runner
                                                             ) -> None:
    s3.upload(BUCKET, "kms/disk.qcow2", images.path("disk.qcow2"), ServerSideEncryption="aws:kms",
              ChecksumAlgorithm="CRC32")
    s3.tamper(BUCKET, "kms/disk.qcow2")
    run = run_importer(s3_env(s3.url(BUCKET, "kms/disk.qcow2")))
    assert run.message is not None and run.message.reason == "ChecksumError"
    assert "calculated crc32:" in run.message.message and "x-amz-checksum-crc32" in run.message.message


def test_multipart_object_is_protected_only_by_a_user_checksum(images: ImageSet, s3: MotoS3, tmp_path: Path,
                                                               run_importer: Runner) -> None:
    source = images.path("disk.vhd")  # 6 MiB: two parts
    s3.upload(BUCKET, "multipart/disk.vhd", source, multipart=True)
    url = s3.url(BUCKET, "multipart/disk.vhd")
    unprotected = run_importer(s3_env(url))
    assert_imported(unprotected, images)
    assert "is that of a multipart upload" in unprotected.log
    assert "only a user-supplied checksum could protect this import, and none was given" in unprotected.log

    digest = sha256_file(source)
    protected = run_importer(s3_env(url, IMPORTER_CHECKSUM=f"sha256:{digest}"))
    assert_imported(protected, images)
    assert "the user-supplied checksum protects this import" in protected.log

    s3.tamper(BUCKET, "multipart/disk.vhd", offset=5 << 20)
    tampered = run_importer(s3_env(url, IMPORTER_CHECKSUM=f"sha256:{digest}"))
    seen = sha256_file(flipped_copy(source, tmp_path / "x", offset=5 << 20))
    assert_refused(tampered, "sha256", digest, seen)


def test_missing_object_is_a_clear_retryable_failure(s3: MotoS3, run_importer: Runner) -> None:
    s3.bucket(BUCKET)
    run = run_importer(s3_env(s3.url(BUCKET, "no/such.img")))
    assert run.returncode == 1
    assert run.message is not None
    assert run.message.message == ('Unable to connect to s3 data source: could not get s3 object: "images/no/such.img": '
                                   'NoSuchKey: The specified key does not exist.')
    assert (run.message.reason, run.message.retryable) == ("ImportSourceUnavailable", True)


def test_credentials_checked_by_a_strict_server(images: ImageSet, tmp_path: Path, run_importer: Runner) -> None:
    with StrictMotoS3(tmp_path) as strict:
        strict.upload(BUCKET, "disk.qcow2", images.path("disk.qcow2"))
        url = f"{strict.url}/{BUCKET}/disk.qcow2"
        right = {"IMPORTER_ACCESS_KEY_ID": strict.access_key, "IMPORTER_SECRET_KEY": strict.secret_key}
        assert_imported(run_importer({**s3_env(url), **right}), images)
        for keys, code in (({**right, "IMPORTER_SECRET_KEY": "not-the-secret"}, "SignatureDoesNotMatch"),
                           (KEYS, "InvalidAccessKeyId")):
            run = run_importer({**s3_env(url), **keys})
            assert run.returncode == 1, run.log
            assert run.message is not None and run.message.reason == "ImportSourceUnavailable"
            assert run.message.message.startswith(
                f'Unable to connect to s3 data source: could not get s3 object: "{BUCKET}/disk.qcow2": {code}: ')
            assert list(run.data.iterdir()) == []
