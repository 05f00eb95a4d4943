"""`cdi image-upload dv|pvc NAME`: virtctl's image-upload against the embedded control plane. It
creates the DataVolume (or upload-target PVC) unless `--no-create`, waits until its upload server is
ready, asks for an upload token (an UploadTokenRequest, answered in the create response as virtctl
expects), uploads the image through the upload proxy with the resumable chunk protocol and a progress
bar (bytes, rate, ETA), waits for the import to succeed, and exits non-zero with the reason if
anything fails.

As virtctl, it refuses at once a DataVolume (or PVC) whose claim waits for its first consumer
(`cannot upload to DataVolume in WaitForFirstConsumer state, make sure the PVC is Bound, or use
force-bind flag`) unless `--force-bind`. A target whose upload already succeeded is not an error: it
says so and exits 0. If the reply to the final chunk is lost, the claim's phase decides: Succeeded
means the upload landed.

With `--kubeconfig FILE` it does the same on a real API server (`cdi.kube`): the token comes from the
aggregated API cdi-apiserver serves, and the proxy is `cdi uploadproxy` (or an install's
cdi-uploadproxy), found in CDIConfig `status.uploadProxyURL` or given with `--uploadproxy-url`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import ssl
import sys
import threading
import time
from pathlib import Path
from typing import Any

from cdi.api.meta import CDI_API_VERSION
from cdi.cli.chunking import MIN_CHUNK
from cdi.cli.errors import AlreadyUploaded, CliError, WaitTimeout
from cdi.cli.state import connect_cluster
from cdi.cli.uploadtokens import PrefetchedTokens
from cdi.cli.waiting import wait_for
from cdi.cluster.errors import AlreadyExists, NotFound
from cdi.cluster.kinds import lookup
from cdi.cluster.protocol import Cluster, Object
from cdi.contracts import annotations as ann
from cdi.controllers.cdiconfig import CONFIG_NAME
from cdi.controllers.upload.resolver import is_upload_populated
from cdi.quantity import QuantityError, parse_quantity

UTR_API = "upload.cdi.kubevirt.io/v1beta1"
ACCESS_MODES = ("ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod")
WAIT_FOR_FIRST_CONSUMER = "WaitForFirstConsumer"
DEFAULT_CLASS_ANNOTATION = "storageclass.kubernetes.io/is-default-class"
SC = lookup("storage.k8s.io/v1", "StorageClass")
# The HTTP client (aiohttp: a fifth of the command's start-up CPU) is imported on a thread once the
# volume is created, while the command waits for the upload server, instead of before anything else.
UPLOAD_CLIENT = "cdi.cli.uploadclient"


class WaitsForFirstConsumer(CliError):
    """virtctl's refusal: the claim will not bind (so no upload server) until a pod uses it."""

    def __init__(self, kind: str) -> None:
        what = "DataVolume" if kind == "dv" else "PVC"
        super().__init__(f"cannot upload to {what} in WaitForFirstConsumer state, make sure the PVC is Bound, "
                         f"or use force-bind flag")


class Complete(Exception):
    """The target's upload had already succeeded before this one began."""


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("image-upload", help="upload a local disk image into a DataVolume or PVC")
    parser.add_argument("kind", choices=("dv", "pvc"), help="create/upload a DataVolume or a bare PVC")
    parser.add_argument("name")
    parser.add_argument("-n", "--namespace", default="default")
    parser.add_argument("--size", help="size of the volume to create, e.g. 10Gi")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--image-path", type=Path, help="the disk image to upload")
    source.add_argument("--archive-path", type=Path, help="a tar archive to unpack into the volume")
    parser.add_argument("--no-create", action="store_true", help="upload into an existing DataVolume/PVC")
    parser.add_argument("--insecure", action="store_true", help="do not verify the upload proxy's certificate")
    parser.add_argument("--uploadproxy-url", help="the upload proxy (default: CDIConfig status.uploadProxyURL)")
    parser.add_argument("--storage-class")
    parser.add_argument("--access-mode", choices=ACCESS_MODES)
    parser.add_argument("--volume-mode", choices=("block", "filesystem"))
    parser.add_argument("--force-bind", action="store_true", help="bind a WaitForFirstConsumer volume at once")
    parser.add_argument("--wait-secs", type=int, default=300, help="how long to wait for the upload server")
    parser.add_argument("--datasource", action="store_true", help="also create a DataSource pointing at it")
    parser.add_argument("--kubeconfig", type=Path, default=None,
                        help="upload on the cluster of this kubeconfig (default: the embedded store under --home)")
    parser.add_argument("--chunk-size", default="auto",
                        help="resumable chunk size, e.g. 32Mi (default auto: about 2 s of transfer each)")
    parser.set_defaults(run=lambda args, home: asyncio.run(run(args, home)))


def claim_manifest(args: argparse.Namespace) -> Object:
    archive = args.archive_path is not None
    notes = {ann.ANN_IMMEDIATE_BINDING: "true"} if args.force_bind else {}
    spec: dict[str, Any] = {"resources": {"requests": {"storage": args.size}}}
    if args.storage_class:
        spec["storageClassName"] = args.storage_class
    if args.access_mode:
        spec["accessModes"] = [args.access_mode]
    if args.volume_mode:
        spec["volumeMode"] = args.volume_mode.capitalize()
    metadata = {"name": args.name, "namespace": args.namespace, "annotations": notes}
    if args.kind == "dv":
        dv_spec: dict[str, Any] = {"source": {"upload": {}}, "storage": spec}
        if archive:
            dv_spec["contentType"] = "archive"
        return {"apiVersion": CDI_API_VERSION, "kind": "DataVolume", "metadata": metadata, "spec": dv_spec}
    spec.setdefault("accessModes", ["ReadWriteOnce"])
    metadata["annotations"] = {**notes, ann.ANN_UPLOAD_REQUEST: "",
                               ann.ANN_CONTENT_TYPE: "archive" if archive else "kubevirt"}
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": metadata, "spec": spec}


def _check_args(args: argparse.Namespace) -> Path:
    path: Path = args.image_path or args.archive_path
    if not path.is_file():
        raise CliError(f"{path} is not a readable file")
    if not args.no_create:
        if not args.size:
            raise CliError("--size is required when creating the volume (or use --no-create)")
        try:
            parse_quantity(args.size)
        except QuantityError as e:
            raise CliError(f"--size: {e}") from e
    return path


async def run(args: argparse.Namespace, home: Path) -> int:
    path = _check_args(args)
    chunk = _chunk_size(args.chunk_size)
    async with connect_cluster(home, args.kubeconfig, busy_timeout=args.request_timeout,
                               create=not args.no_create) as cluster:
        if not args.no_create:
            await _create(cluster, args)
        try:
            await _upload(cluster, args, path, chunk)
        except (Complete, AlreadyUploaded):
            print(f"{'DataVolume' if args.kind == 'dv' else 'PVC'} {args.namespace}/{args.name} has already been "
                  f"uploaded; nothing to do")
            return 0
        if args.datasource:
            await _create_datasource(cluster, args)
    print(f"Uploading {path} completed successfully")
    return 0


def preload(module: str) -> threading.Thread:
    """Import `module` on a daemon thread. A later import of it waits for this one (the import lock); if
    this one failed, that import tries again and raises where the command can report it."""
    def load() -> None:
        with contextlib.suppress(Exception):
            importlib.import_module(module)

    thread = threading.Thread(target=load, name=f"preload {module}", daemon=True)
    thread.start()
    return thread


async def _upload(cluster: Cluster, args: argparse.Namespace, path: Path, chunk: int | None) -> None:
    """Wait for the upload server, then upload. While it waits, the HTTP client is imported on a thread
    and the first upload token is asked for: neither needs the server, and both used to follow it."""
    preload(UPLOAD_CLIENT)
    tokens = PrefetchedTokens(lambda: _token(cluster, args.namespace, args.name))
    try:
        await _wait_ready(cluster, args)
        from cdi.cli.uploadclient import ResumableUploader, UploadJob

        proxy_url, context = await _proxy(cluster, args)
        job = UploadJob(proxy_url, args.namespace, args.name, path, context, chunk)
        bar = ProgressBar()
        uploader = ResumableUploader(job, tokens, bar.update, lambda: _succeeded(cluster, args))
        await uploader.run()
    finally:
        await tokens.close()
    bar.finish(path.stat().st_size, uploader.transfer_seconds, uploader.interruptions)
    await _wait_done(cluster, args)


async def _succeeded(cluster: Cluster, args: argparse.Namespace) -> bool:
    """Whether the claim's upload succeeded (asked when the final chunk's reply was lost)."""
    try:
        pvc = await cluster.get("v1", "PersistentVolumeClaim", args.name, args.namespace)
    except NotFound:
        return False
    return _notes(pvc).get(ann.ANN_POD_PHASE) == "Succeeded"


def _chunk_size(text: str) -> int | None:
    if text == "auto":
        return None
    try:
        size = parse_quantity(text)
    except QuantityError as e:
        raise CliError(f"--chunk-size: {e}") from e
    if size < MIN_CHUNK:
        raise CliError(f"--chunk-size: {text} is below the smallest chunk, {MIN_CHUNK >> 20}Mi")
    return size


async def _create(cluster: Cluster, args: argparse.Namespace) -> None:
    manifest = claim_manifest(args)
    try:
        await cluster.create(manifest)
    except AlreadyExists:
        raise CliError(f"{manifest['kind']} {args.namespace}/{args.name} already exists; use --no-create to upload "
                       f"into it") from None
    print(f"{manifest['kind']} {args.namespace}/{args.name} created")


def _notes(pvc: Object | None) -> dict[str, str]:
    return dict(((pvc or {}).get("metadata") or {}).get("annotations") or {})


async def _binding_modes(cluster: Cluster) -> dict[str | None, str]:
    """Each StorageClass's volumeBindingMode by name; None names the default class."""
    modes: dict[str | None, str] = {}
    for sc in (await cluster.list(SC.api_version, SC.kind)).items:
        mode = str(sc.get("volumeBindingMode") or "Immediate")
        modes[sc["metadata"]["name"]] = mode
        if (sc["metadata"].get("annotations") or {}).get(DEFAULT_CLASS_ANNOTATION) == "true":
            modes.setdefault(None, mode)
    return modes


def waits_for_first_consumer(pvc: Object, modes: dict[str | None, str]) -> bool:
    """A claim that stays Pending until a pod uses it: unbound, of a WaitForFirstConsumer class, and not
    asked to bind at once (`--force-bind`'s annotation)."""
    if _notes(pvc).get(ann.ANN_IMMEDIATE_BINDING) is not None:
        return False
    spec, status = pvc.get("spec") or {}, pvc.get("status") or {}
    if spec.get("volumeName") or status.get("phase") not in (None, "Pending"):
        return False
    return modes.get(spec.get("storageClassName")) == WAIT_FOR_FIRST_CONSUMER


async def _check_binding(cluster: Cluster, args: argparse.Namespace) -> dict[str | None, str]:
    """virtctl's check on the DataVolume's phase; the binding modes for the claim's own check (none with
    --force-bind)."""
    if args.force_bind:
        return {}
    if args.kind == "dv":
        try:
            dv = await cluster.get(CDI_API_VERSION, "DataVolume", args.name, args.namespace)
        except NotFound:
            dv = {}
        if (dv.get("status") or {}).get("phase") == WAIT_FOR_FIRST_CONSUMER:
            raise WaitsForFirstConsumer(args.kind)
    return await _binding_modes(cluster)


async def _wait_ready(cluster: Cluster, args: argparse.Namespace) -> None:
    """Until the upload server is ready, following the store's watch (no polling interval to wait out).

    Raises `Complete` when the claim's upload already succeeded, `WaitsForFirstConsumer` (unless
    --force-bind) when it will not bind without a consumer.
    """
    modes = await _check_binding(cluster, args)
    print("Waiting for the upload server to be ready...")

    def ready(pvc: Object | None) -> bool:
        notes = _notes(pvc)
        # A claim the upload populator fills is uploaded through its PVC′ (the proxy follows it there).
        if notes and ann.ANN_UPLOAD_REQUEST not in notes and not (pvc is not None and is_upload_populated(pvc)):
            raise CliError(f"PVC {args.namespace}/{args.name} is not an upload target")
        if notes.get(ann.ANN_POD_PHASE) == "Succeeded":
            raise Complete
        if pvc is not None and waits_for_first_consumer(pvc, modes):
            raise WaitsForFirstConsumer(args.kind)
        return notes.get(ann.ANN_POD_PHASE) == "Running" and notes.get(ann.ANN_POD_READY) == "true"

    try:
        await wait_for(cluster, lookup("v1", "PersistentVolumeClaim"), args.name, args.namespace, ready,
                       args.wait_secs)
    except WaitTimeout:
        raise CliError(f"the upload server for {args.namespace}/{args.name} was not ready within {args.wait_secs} s; "
                       f"see `cdi describe pvc {args.name}`") from None


async def _proxy(cluster: Cluster, args: argparse.Namespace) -> tuple[str, ssl.SSLContext | bool]:
    status: dict[str, Any] = {}
    try:
        status = (await cluster.get(CDI_API_VERSION, "CDIConfig", CONFIG_NAME)).get("status") or {}
    except NotFound:
        pass
    url = args.uploadproxy_url or status.get("uploadProxyURL")
    if not url:
        raise CliError("no upload proxy URL: pass --uploadproxy-url, or start `cdi serve` (on a cluster, CDIConfig "
                       "status.uploadProxyURL names it)")
    if args.insecure:
        return str(url), False
    context = ssl.create_default_context()
    if ca := status.get("uploadProxyCA"):
        context.load_verify_locations(cadata=str(ca))
    return str(url), context


async def _token(cluster: Cluster, namespace: str, pvc: str) -> str:
    """A fresh upload token: the create of an UploadTokenRequest answers with it (nothing is stored, so
    virtctl's fixed name never collides)."""
    answer = await cluster.create({"apiVersion": UTR_API, "kind": "UploadTokenRequest",
                                   "metadata": {"name": "token-for-virtctl", "namespace": namespace},
                                   "spec": {"pvcName": pvc}})
    token = (answer.get("status") or {}).get("token")
    if not isinstance(token, str) or not token:
        raise CliError(f"the UploadTokenRequest for {namespace}/{pvc} was answered without a token")
    return token


async def _wait_done(cluster: Cluster, args: argparse.Namespace) -> None:
    print("Waiting for the import to finish...")

    def done(pvc: Object | None) -> bool:
        notes = _notes(pvc)
        if notes.get(ann.ANN_IMPORT_FATAL_ERROR) == "true" or notes.get(ann.ANN_POD_PHASE) == "Failed":
            raise CliError(f"upload failed: {notes.get(ann.ANN_RUNNING_CONDITION_MESSAGE) or 'see cdi describe'}")
        return notes.get(ann.ANN_POD_PHASE) == "Succeeded"

    await wait_for(cluster, lookup("v1", "PersistentVolumeClaim"), args.name, args.namespace, done, None)


async def _create_datasource(cluster: Cluster, args: argparse.Namespace) -> None:
    try:
        await cluster.create({"apiVersion": CDI_API_VERSION, "kind": "DataSource",
                              "metadata": {"name": args.name, "namespace": args.namespace},
                              "spec": {"source": {"pvc": {"name": args.name, "namespace": args.namespace}}}})
    except AlreadyExists:
        pass
    print(f"DataSource {args.namespace}/{args.name} points at the uploaded volume")


class ProgressBar:
    def __init__(self) -> None:
        self._start = time.monotonic()
        self._last = 0.0

    def update(self, done: int, total: int) -> None:
        now = time.monotonic()
        if now - self._last < 0.2 and done < total:
            return
        self._last = now
        elapsed = max(now - self._start, 1e-6)
        rate = done / elapsed
        eta = (total - done) / rate if rate > 0 else 0.0
        percent = done * 100.0 / total if total else 100.0
        bar = "#" * int(percent / 2.5)
        sys.stderr.write(f"\r [{bar:<40}] {percent:6.2f}%  {done / 2**20:9.1f}/{total / 2**20:.1f} MiB  "
                         f"{rate / 2**20:7.1f} MiB/s  ETA {eta:5.0f}s")
        sys.stderr.flush()

    def finish(self, size: int, seconds: float, interruptions: int) -> None:
        resumed = f", resumed after {interruptions} interruption(s)" if interruptions else ""
        rate = size / seconds / 2**20 if seconds > 0 else 0.0
        sys.stderr.write(f"\nupload done: {size} bytes in {seconds:.3f} s ({rate:.1f} MiB/s{resumed})\n")
