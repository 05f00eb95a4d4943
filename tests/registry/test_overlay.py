"""The one-file-in-/disk/ rule over stacked layers, fed top layer first as the layer walk does."""

from __future__ import annotations

import pytest

from importer.errors import InvalidImage
from importer.sources.registry.overlay import Kind, OverlayView

D, F, LINK = Kind.DIRECTORY, Kind.FILE, Kind.OTHER


def disks(layers_top_first: list[list[tuple[str, Kind]]]) -> list[str]:
    view = OverlayView()
    found = []
    for number, layer in enumerate(layers_top_first):
        for name, kind in layer:
            if view.classify(name, kind, f"layer {number}"):
                found.append(name)
        view.end_layer()
    return found


def test_the_seed_layout() -> None:
    assert disks([[("disk/", D), ("disk/disk.qcow2", F)]]) == ["disk/disk.qcow2"]


def test_dot_slash_and_absolute_names() -> None:
    assert disks([[("./disk/", D), ("./disk/disk.img", F)]]) == ["./disk/disk.img"]
    assert disks([[("/disk/disk.img", F)]]) == ["/disk/disk.img"]


def test_files_elsewhere_and_prefix_lookalikes_are_ignored() -> None:
    assert disks([[("diskfoo/x.img", F), ("etc/disk/x", F), ("usr/bin/sh", F)]]) == []


def test_upper_layer_file_replaces_the_same_path_below() -> None:
    assert disks([[("disk/disk.img", F)], [("disk/disk.img", F)]]) == ["disk/disk.img"]


def test_whiteout_deletes_a_lower_disk() -> None:
    assert disks([[("disk/.wh.old.img", F), ("disk/new.img", F)], [("disk/old.img", F)]]) == ["disk/new.img"]


def test_opaque_directory_hides_everything_below() -> None:
    assert disks([[("disk/.wh..wh..opq", F), ("disk/new.img", F)], [("disk/a.img", F), ("disk/b.img", F)]]) \
        == ["disk/new.img"]


def test_whiteout_of_the_whole_directory() -> None:
    assert disks([[(".wh.disk", F)], [("disk/old.img", F)]]) == []


def test_markers_do_not_apply_to_their_own_layer() -> None:
    assert disks([[("disk/.wh.x.img", F), ("disk/x.img", F)]]) == ["disk/x.img"]


def test_directories_merge_so_a_lower_file_stays_visible() -> None:
    assert disks([[("disk/", D)], [("disk/", D), ("disk/disk.img", F)]]) == ["disk/disk.img"]


def test_a_second_visible_file_counts_even_in_another_layer() -> None:
    assert disks([[("disk/a.img", F)], [("disk/b.img", F)]]) == ["disk/a.img", "disk/b.img"]


@pytest.mark.parametrize(("layers", "message"), [
    ([[("disk/sub/x.img", F)]], "image directory contains another directory: /disk/sub/x.img"),
    ([[("disk/link.img", LINK)]], "/disk/link.img in layer 0 is a link or special file, not a regular file"),
    ([[("disk", F)]], "/disk in layer 0 is a regular file, not the directory"),
    ([[("disk/x.img", F), ("./disk/x.img", F)]], "/disk/x.img appears twice in layer 0"),
])
def test_entries_that_break_the_rule(layers: list[list[tuple[str, Kind]]], message: str) -> None:
    with pytest.raises(InvalidImage) as caught:
        disks(layers)
    assert message in caught.value.message


def test_a_hidden_link_is_not_an_error() -> None:
    assert disks([[("disk/.wh.link.img", F), ("disk/disk.img", F)], [("disk/link.img", LINK)]]) == ["disk/disk.img"]
