"""The real `cdi-importer` against real `docker-registry` processes: container disks in every layer
compression, Docker and OCI media types, multi-architecture indexes, digest references, a disk replaced
by a later layer, and oci-archive files, each checked byte for byte against the reference disk."""

from __future__ import annotations

from pathlib import Path

from importer.sources.registry.manifest import host_platform
from tests.importer.conftest import ImportRun, Runner
from tests.registry.conftest import ARM_DISK, Catalog
from tests.support.catalog import ImageSet
from tests.support.registry import RegistryServer


def registry_env(endpoint: str, **extra: str) -> dict[str, str]:
    return {"IMPORTER_SOURCE": "registry", "IMPORTER_ENDPOINT": endpoint, **extra}


def plain(registry: RegistryServer, repository: str, tag: str = "latest", **extra: str) -> dict[str, str]:
    """A plain-HTTP registry is reachable only as an insecure one (INSECURE_TLS), as upstream."""
    return registry_env(registry.reference(repository, tag), INSECURE_TLS="true", **extra)


def assert_reference_disk(run: ImportRun, images: ImageSet) -> None:
    assert run.returncode == 0, run.log
    assert run.message is not None and run.message.message == "Import Complete"
    assert run.disk.stat().st_size == images.virtual_size
    assert run.disk_sha256() == images.reference_sha256


def test_seed_layout_qcow2_in_a_gzip_layer(registry: RegistryServer, catalog: Catalog, images: ImageSet,
                                           run_importer: Runner) -> None:
    """The seeds' container disk: /disk/disk.qcow2 owned 107, mode 0440, one gzip layer (OCI types)."""
    run = run_importer(plain(registry, "disks/fedora"))
    assert_reference_disk(run, images)
    assert "instancetype.kubevirt.io/default-preference" in run.log  # upstream's envsToLabels


def test_docker_media_types(registry: RegistryServer, catalog: Catalog, images: ImageSet,
                            run_importer: Runner) -> None:
    assert_reference_disk(run_importer(plain(registry, "disks/fedora", "docker")), images)


def test_zstd_layer_with_a_raw_disk_streams_without_scratch(registry: RegistryServer, catalog: Catalog,
                                                            images: ImageSet, run_importer: Runner) -> None:
    """Better than upstream, which always stages registry layers in scratch space."""
    run = run_importer(plain(registry, "disks/raw", "zstd"), scratch=False)
    assert_reference_disk(run, images)
    assert not run.scratch.exists()


def test_uncompressed_layer_between_unrelated_layers(registry: RegistryServer, catalog: Catalog,
                                                     images: ImageSet, run_importer: Runner) -> None:
    assert_reference_disk(run_importer(plain(registry, "disks/layers")), images)


def test_compressed_file_in_disk_is_decompressed(registry: RegistryServer, catalog: Catalog, images: ImageSet,
                                                 run_importer: Runner) -> None:
    """/disk/disk.raw.xz: upstream hands the xz bytes to qemu-img as raw; we peel it like any stream."""
    assert_reference_disk(run_importer(plain(registry, "disks/xz-inside"), scratch=False), images)


def test_disk_replaced_by_a_later_layer(registry: RegistryServer, catalog: Catalog, images: ImageSet,
                                        run_importer: Runner) -> None:
    """The base layer's /disk/old.img is whited out by the top layer, which adds the real disk."""
    assert_reference_disk(run_importer(plain(registry, "disks/replaced")), images)


def test_index_with_a_requested_architecture(registry: RegistryServer, catalog: Catalog, images: ImageSet,
                                             run_importer: Runner) -> None:
    run = run_importer(plain(registry, "disks/multiarch", IMPORTER_REGISTRY_IMAGE_ARCHITECTURE="arm64"))
    assert run.returncode == 0, run.log
    assert run.disk_sha256() == images[ARM_DISK].content_sha256


def test_index_without_the_requested_architecture(registry: RegistryServer, catalog: Catalog,
                                                  run_importer: Runner) -> None:
    run = run_importer(plain(registry, "disks/multiarch", IMPORTER_REGISTRY_IMAGE_ARCHITECTURE="s390x"))
    assert run.returncode == 1
    assert run.message is not None and run.message.reason == "InvalidImage"
    assert ('no image found in image index for architecture "s390x", variant "", OS "linux"'
            in run.message.message)
    assert not run.disk.exists()


def test_single_image_of_another_architecture_is_refused(registry: RegistryServer, catalog: Catalog,
                                                         run_importer: Runner) -> None:
    run = run_importer(plain(registry, "disks/fedora", IMPORTER_REGISTRY_IMAGE_ARCHITECTURE="arm64"))
    assert run.returncode == 1 and run.message is not None
    assert ('manifest image architecture: "amd64" doesn\'t match requested architecture: "arm64"'
            in run.message.message)


def test_references_by_digest(registry: RegistryServer, catalog: Catalog, images: ImageSet,
                              run_importer: Runner) -> None:
    """An index pinned by digest (its entry chosen for the host's architecture), and a single manifest."""
    index = run_importer(plain(registry, "disks/multiarch", catalog.multiarch_digest))
    if host_platform().architecture == "arm64":
        assert index.disk_sha256() == images[ARM_DISK].content_sha256
    else:
        assert_reference_disk(index, images)
    assert_reference_disk(run_importer(plain(registry, "disks/fedora", catalog.fedora_digest)), images)


def test_oci_archive(catalog: Catalog, images: ImageSet, run_importer: Runner) -> None:
    assert_reference_disk(run_importer(registry_env(f"oci-archive://{catalog.layout_archive}:fedora")), images)


def test_oci_archive_needs_a_name_when_it_holds_several_images(catalog: Catalog, run_importer: Runner) -> None:
    run = run_importer(registry_env(f"oci-archive:{catalog.layout_archive}"))
    assert run.returncode == 1 and run.message is not None
    assert "holds more than one image (arm, fedora)" in run.message.message


def test_missing_oci_archive(tmp_path: Path, run_importer: Runner) -> None:
    run = run_importer(registry_env(f"oci-archive:{tmp_path / 'absent.tar'}"))
    assert run.returncode == 1 and run.message is not None
    assert run.message.reason == "ImagePullFailed" and run.message.retryable is True
    assert "failed to pull image" in run.message.message
