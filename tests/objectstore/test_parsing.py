"""Pure rules of the object-store sources, as tables: S3 and GCS URLs, regions, which stored digest
is verified (or why none is), the credentials file, and the importer pod for s3/gcs sources."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

import pytest

from cdi.controllers.config_view import ConfigView
from cdi.controllers.importpod.podspec import ImporterPodInputs, importer_pod
from importer.config import load_config
from importer.errors import ConfigurationError
from importer.sources.gcs import GcsLocation, parse_gcs_url
from importer.sources.gcs import stored_digest as gcs_digest
from importer.sources.gcscredentials import AuthorizedUser, ServiceAccountKey, load_credentials, parse_credentials
from importer.sources.objectstore import Crc32
from importer.sources.s3 import S3Location, parse_s3_url, region_for
from importer.sources.s3 import stored_digest as s3_digest

MD5 = hashlib.md5(b"disk").hexdigest()
SHA256_B64 = base64.b64encode(hashlib.sha256(b"disk").digest()).decode()
CRC32_B64 = base64.b64encode(Crc32().digest()).decode()


@pytest.mark.parametrize(("url", "expected"), [
    ("http://127.0.0.1:9000/images/fedora/disk.qcow2",
     S3Location("http://127.0.0.1:9000", "images", "fedora/disk.qcow2", "us-east-1")),
    ("https://minio.example.com/bucket/disk.img", S3Location("https://minio.example.com", "bucket", "disk.img", "minio")),
    ("https://s3.eu-west-1.amazonaws.com/bucket/a%20b.img",
     S3Location("https://s3.eu-west-1.amazonaws.com", "bucket", "a b.img", "eu-west-1")),
    ("https://s3.amazonaws.com/bucket/disk.img", S3Location("https://s3.amazonaws.com", "bucket", "disk.img", "us-east-1")),
    ("https://my-bucket.s3.us-west-2.amazonaws.com/dir/disk.img",
     S3Location("https://s3.us-west-2.amazonaws.com", "my-bucket", "dir/disk.img", "us-west-2")),
    ("http://[::1]:9000/b/k", S3Location("http://[::1]:9000", "b", "k", "us-east-1")),
])
def test_s3_urls(url: str, expected: S3Location) -> None:
    assert parse_s3_url(url) == expected


@pytest.mark.parametrize(("host", "region"), [
    ("s3.ap-south-1.amazonaws.com", "ap-south-1"), ("s3-us-west-1.amazonaws.com", "us-west-1"),
    ("s3.dualstack.eu-central-1.amazonaws.com", "eu-central-1"), ("s3.cn-north-1.amazonaws.com.cn", "cn-north-1"),
    ("ceph-rgw.storage.svc", "ceph-rgw"), ("10.0.0.1", "us-east-1"), ("localhost", "localhost"),
])
def test_s3_regions(host: str, region: str) -> None:
    assert region_for(host) == region


@pytest.mark.parametrize("url", ["", "s3://bucket/key", "http://host/bucket", "http://host/", "ftp://h/b/k"])
def test_bad_s3_urls(url: str) -> None:
    with pytest.raises(ConfigurationError, match="Unable to connect to s3 data source"):
        parse_s3_url(url)


@pytest.mark.parametrize(("response", "algorithm", "origin"), [
    ({"ETag": f'"{MD5}"'}, "md5", "the ETag"),
    ({"ETag": f'"{MD5}"', "ChecksumCRC32": CRC32_B64}, "md5", "the ETag"),
    ({"ETag": f'"{MD5}"', "ChecksumSHA256": SHA256_B64}, "sha256", "x-amz-checksum-sha256"),
    ({"ETag": f'"{MD5}"', "ChecksumCRC32": CRC32_B64, "ServerSideEncryption": "aws:kms"}, "crc32",
     "x-amz-checksum-crc32"),
    ({"ETag": f'"{MD5}-3"', "ChecksumCRC32": CRC32_B64, "ChecksumType": "FULL_OBJECT"}, "crc32",
     "x-amz-checksum-crc32"),
    ({"ETag": f'"{MD5}"', "ServerSideEncryption": "AES256"}, "md5", "the ETag"),
])
def test_s3_digest_choice(response: dict[str, Any], algorithm: str, origin: str) -> None:
    digest, why = s3_digest(response)
    assert digest is not None and (digest.algorithm, digest.origin, why) == (algorithm, origin, "")


@pytest.mark.parametrize(("response", "reason"), [
    ({"ETag": f'"{MD5}-3"', "ChecksumCRC32": f"{CRC32_B64}-3"},
     f"x-amz-checksum-crc32 {CRC32_B64}-3 is a composite (per-part) checksum; ETag {MD5}-3 is that of a multipart "
     "upload"),
    ({"ETag": f'"{MD5}"', "SSECustomerAlgorithm": "AES256"}, "the ETag of an SSE-KMS or SSE-C object is not its MD5"),
    ({}, "the object store reported no ETag or checksum"),
])
def test_s3_objects_without_a_usable_digest(response: dict[str, Any], reason: str) -> None:
    assert s3_digest(response) == (None, reason)


@pytest.mark.parametrize(("url", "emulator", "expected"), [
    ("gs://bucket/dir/disk.qcow2", "", GcsLocation("https://storage.googleapis.com", "bucket", "dir/disk.qcow2")),
    ("https://storage.googleapis.com/bucket/disk%201.img", "",
     GcsLocation("https://storage.googleapis.com", "bucket", "disk 1.img")),
    ("https://storage.cloud.google.com/bucket/disk.img", "",
     GcsLocation("https://storage.googleapis.com", "bucket", "disk.img")),
    ("https://bucket.storage.googleapis.com/a/disk.img", "",
     GcsLocation("https://storage.googleapis.com", "bucket", "a/disk.img")),
    ("http://127.0.0.1:4443/bucket/disk.img", "", GcsLocation("http://127.0.0.1:4443", "bucket", "disk.img")),
    ("gs://bucket/disk.img", "localhost:9023", GcsLocation("http://localhost:9023", "bucket", "disk.img")),
    ("https://storage.googleapis.com/b/o", "https://gcs.internal:8443/",
     GcsLocation("https://gcs.internal:8443", "b", "o")),
])
def test_gcs_urls(url: str, emulator: str, expected: GcsLocation) -> None:
    assert parse_gcs_url(url, emulator) == expected


def test_gcs_media_url_escapes_the_object_name() -> None:
    location = GcsLocation("https://storage.googleapis.com", "b", "dir/a b+c.img")
    assert location.media_url == "https://storage.googleapis.com/storage/v1/b/b/o/dir%2Fa%20b%2Bc.img?alt=media"


@pytest.mark.parametrize("url", ["", "gs://bucket", "gs:///object", "s3://b/o", "https://host/bucket"])
def test_bad_gcs_urls(url: str) -> None:
    with pytest.raises(ConfigurationError, match="Unable to connect to gcs data source"):
        parse_gcs_url(url)


MD5_B64 = base64.b64encode(hashlib.md5(b"disk").digest()).decode()


@pytest.mark.parametrize(("headers", "served", "stored", "algorithm", "reason"), [
    ([f"crc32c=AAAAAA==,md5={MD5_B64}"], "", None, "md5", ""),
    (["crc32c=AAAAAA==", f"md5={MD5_B64}"], "gzip", "gzip", "md5", ""),
    (["crc32c=AAAAAA==,md5=None"], "", None, "crc32c", ""),
    ([f"crc32c=AAAAAA==,md5={MD5_B64}"], "", "gzip", None,
     "the object is stored with Content-Encoding gzip but was served as identity"),
    ([], "", None, None, "the server sent no x-goog-hash"),
])
def test_gcs_digest_choice(headers: list[str], served: str, stored: str | None, algorithm: str | None,
                           reason: str) -> None:
    digest, why = gcs_digest(headers, served, stored)
    assert (digest.algorithm if digest else None, why) == (algorithm, reason)


def test_credentials_files(tmp_path: Path) -> None:
    key = parse_credentials({"type": "service_account", "client_email": "a@b", "private_key": "PEM"}, tmp_path)
    assert key == ServiceAccountKey("a@b", "PEM", "", "https://oauth2.googleapis.com/token")
    user = parse_credentials({"type": "authorized_user", "client_id": "i", "client_secret": "s",
                              "refresh_token": "r", "token_uri": "https://t/"}, tmp_path)
    assert user == AuthorizedUser("i", "s", "r", "https://t/")
    assert user.token_form(0) == {"grant_type": "refresh_token", "client_id": "i", "client_secret": "s",
                                  "refresh_token": "r"}
    with pytest.raises(ConfigurationError, match="missing private_key"):
        parse_credentials({"type": "service_account", "client_email": "a@b"}, tmp_path)
    with pytest.raises(ConfigurationError, match="cannot sign"):
        key.assertion(0)


@pytest.mark.parametrize(("content", "problem"), [
    ('{"type": "external_account"}', "unsupported type 'external_account' (expected service_account or "
                                     "authorized_user)"),
    ("not json", "are not JSON"),
    ("[]", "are not a JSON object"),
    (None, "cannot read Google credentials"),
])
def test_unusable_credentials_files(content: str | None, problem: str, tmp_path: Path) -> None:
    path = tmp_path / "credentials.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigurationError) as failure:
        load_credentials(path)
    assert problem in failure.value.message


def test_config_reads_the_google_variables() -> None:
    config = load_config({"IMPORTER_SOURCE": "gcs", "GOOGLE_APPLICATION_CREDENTIALS": "/google/credentials.json",
                          "STORAGE_EMULATOR_HOST": " localhost:9023 "})
    assert (config.google_credentials, config.storage_emulator_host) == (Path("/google/credentials.json"),
                                                                         "localhost:9023")
    assert load_config({"IMPORTER_SOURCE": "s3"}).google_credentials is None


def _pvc(source: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": "dv", "namespace": "ns", "uid": "u",
                         "annotations": {"cdi.kubevirt.io/storage.import.source": source,
                                         "cdi.kubevirt.io/storage.import.endpoint": "gs://b/o",
                                         "cdi.kubevirt.io/storage.import.secretName": "creds"}},
            "spec": {"resources": {"requests": {"storage": "1Gi"}}}}


def _container(source: str) -> dict[str, Any]:
    pod = importer_pod(ImporterPodInputs(pvc=_pvc(source), pod_name="importer-dv", config=ConfigView()))
    container: dict[str, Any] = pod["spec"]["containers"][0]
    container["volumes"] = pod["spec"]["volumes"]
    return container


def test_gcs_secret_is_a_key_file_at_google() -> None:
    container = _container("gcs")
    env = {e["name"]: e for e in container["env"]}
    assert env["GOOGLE_APPLICATION_CREDENTIALS"]["value"] == "/google/credentials.json"
    assert "IMPORTER_ACCESS_KEY_ID" not in env and "IMPORTER_SECRET_KEY" not in env
    assert {"name": "cdi-gcs-secret-vol", "mountPath": "/google"} in container["volumeMounts"]
    assert {"name": "cdi-gcs-secret-vol", "secret": {"secretName": "creds"}} in container["volumes"]


def test_s3_secret_is_an_access_key_pair() -> None:
    container = _container("s3")
    env = {e["name"]: e for e in container["env"]}
    assert env["IMPORTER_ACCESS_KEY_ID"]["valueFrom"] == {"secretKeyRef": {"name": "creds", "key": "accessKeyId"}}
    assert env["IMPORTER_SECRET_KEY"]["valueFrom"] == {"secretKeyRef": {"name": "creds", "key": "secretKey"}}
    assert "GOOGLE_APPLICATION_CREDENTIALS" not in env
    assert not any(m["mountPath"] == "/google" for m in container.get("volumeMounts", []))

