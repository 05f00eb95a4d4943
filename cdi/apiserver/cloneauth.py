"""The datavolume-mutate webhook's one mutation on a cluster: the clone token of a cross-namespace clone.

`CloneAuthorizer.patch` runs the steps of `cdi.admission.clonetoken` against the real API server: it
resolves the source (`cdi.admission.clonesource.clone_source`, reading DataSources and the source
Namespace through the webhook's lookup), asks the API server one SubjectAccessReview at a time, as the
user the AdmissionReview names (user, groups, uid, extra), until upstream's rules decide, and answers
with a JSONPatch adding `cdi.kubevirt.io/storage.clone.token` signed with `cdi-api-signing-key`, or
raises upstream's refusal. Only DataVolume CREATE is mutated; everything else passes unchanged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from cdi.admission import AdmissionRequest, Lookup
from cdi.admission.clonesource import (
    AccessCheck,
    RequestingUser,
    access_alternatives,
    access_review,
    clone_source,
    insufficient_permissions,
    next_check,
    review_allowed,
    verdict,
)
from cdi.admission.clonetoken import clone_target, clone_token_patch, is_datavolume_create, issue_for
from cdi.apiserver.admissionreview import ReviewRequest
from cdi.cluster.errors import ApiError, ServerError
from cdi.cluster.protocol import Cluster, Object
from cdi.tokens import CloneTokens

log = logging.getLogger(__name__)


class CloneAuthorizer:
    def __init__(self, cluster: Cluster, tokens: CloneTokens, clock: Callable[[], float]) -> None:
        self._cluster, self._tokens, self._clock = cluster, tokens, clock

    async def patch(self, review: ReviewRequest, request: AdmissionRequest, lookup: Lookup) -> list[Object] | None:
        """The patch adding the clone token; None when the write needs none; the API error refusing it."""
        if not is_datavolume_create(request) or review.object is None:
            return None
        source = await asyncio.to_thread(clone_source, request.object, lookup)
        if source is None:
            return None
        target = clone_target(request.object, review.namespace, review.name)
        user = RequestingUser.from_user_info(review.user)
        alternatives, answers = access_alternatives(source), dict[AccessCheck, bool]()
        while (check := next_check(alternatives, answers)) is not None:
            answers[check] = await self._allowed(user, check)
        if not verdict(alternatives, answers):
            raise insufficient_permissions(user.name, source)
        log.info("%s may clone %s %s/%s into %s/%s: clone token issued", user.name, source.kind, source.namespace,
                 source.name, *target)
        return clone_token_patch(review.object, issue_for(self._tokens, source, target, self._clock()))

    async def _allowed(self, user: RequestingUser, check: AccessCheck) -> bool:
        try:
            return review_allowed(await self._cluster.create(access_review(user, check)))
        except ApiError as e:
            raise ServerError(f"could not authorize the clone: the SubjectAccessReview failed: {e.message}") from e
