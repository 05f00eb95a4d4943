"""The pure parts of `cdi node`'s kubelet API (`cdi.embedded.kubeletapi`): request options, log tails,
client-certificate users and the access review it asks for."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from cdi import pki
from cdi.embedded.kubeletapi import (
    LogOptions,
    LogRequestError,
    User,
    access_review,
    container_running,
    log_options,
    read_log,
    tail,
    user_of,
)

NOW = datetime.datetime(2026, 12, 2, tzinfo=datetime.UTC)


@pytest.mark.parametrize(("query", "expected"), [
    ({}, LogOptions()),
    ({"previous": "true", "tailLines": "3"}, LogOptions(previous=True, tail_lines=3)),
    ({"follow": "1", "limitBytes": "10"}, LogOptions(follow=True, limit_bytes=10)),
    ({"follow": "false", "tailLines": ""}, LogOptions()),
])
def test_log_options(query: dict[str, str], expected: LogOptions) -> None:
    assert log_options(query) == expected


@pytest.mark.parametrize(("query", "words"), [
    ({"tailLines": "x"}, "tailLines must be an integer"),
    ({"limitBytes": "-1"}, "limitBytes must not be negative"),
    ({"timestamps": "true"}, "timestamps are not supported"),
    ({"sinceSeconds": "10"}, "sinceSeconds is not supported"),
    ({"sinceTime": "2026-12-02T00:00:00Z"}, "sinceTime is not supported"),
])
def test_log_options_refused_with_a_reason(query: dict[str, str], words: str) -> None:
    with pytest.raises(LogRequestError, match=words) as refused:
        log_options(query)
    assert refused.value.status == 400


@pytest.mark.parametrize(("lines", "expected"), [
    (None, b"a\nb\nc"), (0, b""), (1, b"c"), (2, b"b\nc"), (9, b"a\nb\nc")])
def test_tail_counts_a_last_line_without_newline(lines: int | None, expected: bytes) -> None:
    assert tail(b"a\nb\nc", lines) == expected


def test_read_log_tails_a_log_longer_than_one_block(tmp_path: Path) -> None:
    path = tmp_path / "c.log"
    lines = [f"line {i:06d} {'x' * 100}\n".encode() for i in range(5000)]
    path.write_bytes(b"".join(lines))
    assert read_log(path, LogOptions(tail_lines=3)) == b"".join(lines[-3:])
    assert read_log(path, LogOptions(tail_lines=1200)) == b"".join(lines[-1200:])
    assert read_log(path, LogOptions()) == b"".join(lines)


def _der(pair: pki.KeyPair) -> bytes:
    return pair.certificate.public_bytes(serialization.Encoding.DER)


def test_user_of_a_certificate_of_the_client_ca() -> None:
    ca = pki.new_ca("cluster-ca", NOW)
    client = pki.issue(ca, "kube-apiserver-kubelet-client", NOW, client=True)
    assert user_of(_der(client), ca.certificate) == User("kube-apiserver-kubelet-client", ())


def test_user_of_refuses_no_certificate_and_another_ca() -> None:
    ca, other = pki.new_ca("cluster-ca", NOW), pki.new_ca("other-ca", NOW)
    with pytest.raises(LogRequestError, match="client certificate signed by the cluster's client CA is required"):
        user_of(None, ca.certificate)
    with pytest.raises(LogRequestError, match="not signed by the client CA") as refused:
        user_of(_der(pki.issue(other, "mallory", NOW, client=True)), ca.certificate)
    assert refused.value.status == 401


def test_access_review_asks_for_nodes_proxy_of_this_node() -> None:
    review = access_review(User("jane", ("devs",)), "pycdi-node")
    assert review["spec"] == {"user": "jane", "groups": ["devs"], "resourceAttributes": {
        "verb": "get", "resource": "nodes", "subresource": "proxy", "name": "pycdi-node"}}


def test_container_running_reads_the_pod_status() -> None:
    pod = {"status": {"containerStatuses": [{"name": "a", "state": {"running": {}}},
                                            {"name": "b", "state": {"terminated": {"exitCode": 0}}}]}}
    assert container_running(pod, "a") and not container_running(pod, "b") and not container_running(pod, "c")
