"""Label selectors in both forms, matched as the API server matches them."""

from __future__ import annotations

import pytest

from cdi.cluster.errors import Invalid
from cdi.embedded.selectors import parse_selector

LABELS = {"app": "importer", "tier": "data", "size": "5", "cdi.kubevirt.io/owner": "dv-1"}


@pytest.mark.parametrize(("selector", "expected"), [
    ("app=importer", True),
    ("app==importer", True),
    ("app=uploader", False),
    ("app!=uploader", True),
    ("missing!=x", True),
    ("app in (importer, uploader)", True),
    ("app in (uploader)", False),
    ("app notin (uploader,cloner)", True),
    ("missing notin (x)", True),
    ("tier", True),
    ("!tier", False),
    ("!missing", True),
    ("size>3", True),
    ("size<3", False),
    ("app=importer,tier=data,!missing", True),
    ("app=importer,tier in (data,web),size!=5", False),
    ("cdi.kubevirt.io/owner=dv-1", True),
    (" app = importer , tier ", True),
    ("", True),
])
def test_string_selectors(selector: str, expected: bool) -> None:
    assert parse_selector(selector).matches(LABELS) is expected


def test_mapping_selector_requires_every_pair() -> None:
    assert parse_selector({"app": "importer", "tier": "data"}).matches(LABELS)
    assert not parse_selector({"app": "importer", "tier": "web"}).matches(LABELS)
    assert parse_selector({}).matches({})


def test_no_labels_only_match_negative_requirements() -> None:
    assert parse_selector("a!=b,!c").matches(None)
    assert not parse_selector("a").matches(None)


@pytest.mark.parametrize("selector", ["app=(x)", "app in x", "=x", "a b", "size>x", "app in (a,b", "a=b=c"])
def test_malformed_selectors_are_invalid(selector: str) -> None:
    with pytest.raises(Invalid):
        parse_selector(selector)
