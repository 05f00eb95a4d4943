"""API errors with Kubernetes' status codes and reasons, raised by every Cluster backend alike.

    ApiError(code, reason)
    ├── NotFound        404 NotFound
    ├── AlreadyExists   409 AlreadyExists
    ├── Conflict        409 Conflict        stale resourceVersion on update
    ├── Gone            410 Expired         watch from a compacted resourceVersion
    └── Invalid         422 Invalid         the object breaks a rule (admission, immutability)
"""

from __future__ import annotations


class ApiError(Exception):
    code = 500
    reason = "InternalError"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(ApiError):
    code = 404
    reason = "NotFound"


class AlreadyExists(ApiError):
    code = 409
    reason = "AlreadyExists"


class Conflict(ApiError):
    code = 409
    reason = "Conflict"


class Gone(ApiError):
    code = 410
    reason = "Expired"


class Invalid(ApiError):
    code = 422
    reason = "Invalid"
