"""API errors with Kubernetes' status codes and reasons, raised by every Cluster backend alike.

    ApiError(code, reason)
    ├── BadRequest      400 BadRequest      a body the server cannot decode (strict decoding: unknown fields)
    ├── Forbidden       403 Forbidden       an admission plugin (or, on a cluster, RBAC) refuses the request
    ├── NotFound        404 NotFound
    ├── AlreadyExists   409 AlreadyExists
    ├── Conflict        409 Conflict        stale resourceVersion on update
    ├── Gone            410 Expired         watch from a compacted resourceVersion
    └── Invalid         422 Invalid         the object breaks a rule (admission, immutability)

`causes` lists each problem on its own, as a Status's `details.causes` does, for clients that print
them one per line.
"""

from __future__ import annotations


class ApiError(Exception):
    code = 500
    reason = "InternalError"

    def __init__(self, message: str, *, causes: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.causes = causes or [message]


class BadRequest(ApiError):
    code = 400
    reason = "BadRequest"


class Forbidden(ApiError):
    code = 403
    reason = "Forbidden"


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
