"""cdi-apiserver's admission webhooks: aiohttp handlers on the paths of `WEBHOOK_PATHS`.

Each validating path decodes the AdmissionReview (`cdi.apiserver.admissionreview`), runs the same pure
handlers the embedded store runs on every write (`cdi.admission.admit`) and answers allowed or denied.
The handlers are synchronous and may read another object (a claim's StorageClass) through `Lookup`;
here that read goes through the Kubernetes backend, so `admit` runs on a worker thread and each lookup
is handed back to the event loop. A body that is not JSON, or not an AdmissionReview, is HTTP 400, as
upstream's handler answers it.

The mutating path (`datavolume-mutate`) adds the clone token annotation to a DataVolume created to clone
from another namespace, once the API server says its creator may (`cdi.apiserver.cloneauth`); every
other write passes unchanged.
`cdi-validate` judges a DELETE of the CDI resource with upstream's rule (`cdi.admission.uninstall`): refused
while `uninstallStrategy` is `BlockUninstallIfWorkloadsExist` and a DataVolume exists in any namespace (the
listing is the one read a pure handler cannot do, so it happens here).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable

from aiohttp import web

from cdi.admission import AdmissionRequest, Lookup, admit
from cdi.admission.uninstall import uninstall_refusal
from cdi.api.meta import CDI_API_VERSION, CDI_GROUP
from cdi.apiserver.admissionreview import ReviewRequest, admission_request, allowed, decode_review, denied
from cdi.apiserver.cloneauth import CloneAuthorizer
from cdi.apiserver.status import decode_object, status_object
from cdi.cluster.errors import ApiError, BadRequest, NotFound, ServerError
from cdi.cluster.kinds import DEFAULT_KINDS, KindRegistry
from cdi.cluster.protocol import Cluster, Object
from cdi.contracts.deployment import WEBHOOK_PATHS
from cdi.tokens import CloneTokens

log = logging.getLogger(__name__)
Admit = Callable[[AdmissionRequest, Lookup], None]
LOOKUP_TIMEOUT = 10.0  # a webhook call has 30 s in all (upstream's timeoutSeconds)


class Webhooks:
    def __init__(self, cluster: Cluster, *, judge: Admit = admit, kinds: KindRegistry = DEFAULT_KINDS,
                 clone_tokens: CloneTokens | None = None, clock: Callable[[], float] = time.time) -> None:
        self._cluster, self._judge, self._kinds = cluster, judge, kinds
        # Without a signing key (tests of validation only) a cross-namespace clone passes without a token.
        self._clones = CloneAuthorizer(cluster, clone_tokens, clock) if clone_tokens is not None else None

    def routes(self) -> list[web.RouteDef]:
        return [web.post(path, self.mutate if name.endswith("-mutate") else self.validate)
                for name, path in WEBHOOK_PATHS.items()]

    async def validate(self, request: web.Request) -> web.Response:
        review = await _read_review(request)
        try:
            if review.operation == "DELETE" and review.kind == "CDI" and review.group == CDI_GROUP:
                await self._judge_uninstall(review)
            judged = admission_request(review, self._kinds)
            if judged is not None:
                await asyncio.to_thread(self._judge, judged, self._lookup(asyncio.get_running_loop()))
        except ApiError as error:
            log.info("%s %s %s/%s denied: %s", review.operation, review.kind, review.namespace, review.name,
                     error.message)
            return web.json_response(denied(review, error))
        return web.json_response(allowed(review))

    async def _judge_uninstall(self, review: ReviewRequest) -> None:
        """Upstream's cdi-validate on DELETE: the CDI as it is stored (oldObject, else read by name)."""
        cdi = review.old_object or review.object
        if cdi is None:
            try:
                cdi = await self._cluster.get(CDI_API_VERSION, "CDI", review.name)
            except NotFound:
                return
        if (cdi.get("spec") or {}).get("uninstallStrategy") is None:
            return  # nothing to list for
        listed = await self._cluster.list(CDI_API_VERSION, "DataVolume", limit=1)
        refusal = uninstall_refusal(cdi, bool(listed.items))
        if refusal is not None:
            raise BadRequest(refusal)  # upstream answers 400 with the message

    async def mutate(self, request: web.Request) -> web.Response:
        review = await _read_review(request)
        try:
            judged = admission_request(review, self._kinds)
            patch = None
            if judged is not None and self._clones is not None:
                patch = await self._clones.patch(review, judged, self._lookup(asyncio.get_running_loop()))
        except ApiError as error:
            log.info("%s %s %s/%s denied: %s", review.operation, review.kind, review.namespace, review.name,
                     error.message)
            return web.json_response(denied(review, error))
        return web.json_response(allowed(review, patch))

    def _lookup(self, loop: asyncio.AbstractEventLoop) -> Lookup:
        def lookup(group: str, kind: str, name: str, namespace: str | None) -> Object | None:
            served = self._kinds.in_group(group, kind)
            if served is None:
                return None
            future = asyncio.run_coroutine_threadsafe(self._get(served.api_version, kind, name, namespace), loop)
            try:
                return future.result(LOOKUP_TIMEOUT)
            except TimeoutError:
                future.cancel()
                raise ServerError(f"reading {served.resource} {name!r} took longer than {LOOKUP_TIMEOUT:.0f} s",
                                  code=504, reason="Timeout") from None
        return lookup

    async def _get(self, api_version: str, kind: str, name: str, namespace: str | None) -> Object | None:
        try:
            return await self._cluster.get(api_version, kind, name, namespace)
        except NotFound:
            return None


async def _read_review(request: web.Request) -> ReviewRequest:
    """The review in the body; a 400 Status response (raised) when there is none to answer."""
    try:
        if request.content_type != "application/json":
            raise BadRequest(f"contentType={request.content_type}, expected application/json")
        return decode_review(decode_object(await request.read(), "AdmissionReview"))
    except BadRequest as error:
        raise web.HTTPBadRequest(text=json.dumps(status_object(error)), content_type="application/json") from error
