"""API errors with Kubernetes' status codes and reasons, raised by every Cluster backend alike.

    ApiError(code, reason)                         retryable
    ├── BadRequest        400 BadRequest           no    a body the server cannot decode (strict decoding)
    ├── Unauthorized      401 Unauthorized         no    no valid credentials
    ├── Forbidden         403 Forbidden            no    RBAC or an admission plugin refuses the request
    ├── NotFound          404 NotFound             no
    ├── MethodNotAllowed  405 MethodNotAllowed     no    a verb the kind does not have (get of a review)
    │   └── (cdi.cluster.kinds.UnknownKind)              the server does not serve the kind
    ├── AlreadyExists     409 AlreadyExists        no
    ├── Conflict          409 Conflict             yes   stale resourceVersion or a failed precondition
    ├── Gone              410 Expired              yes   watch or continue token from a compacted version
    ├── Invalid           422 Invalid              no    the object breaks a rule (schema, admission)
    ├── TooManyRequests   429 TooManyRequests      yes   throttled; `retry_after` seconds when the server says
    └── ServerError       5xx InternalError ...    yes   the server or its storage failed; try again later

`retryable` says whether the same request may succeed later unchanged; controllers back off and
retry those and report the others. `causes` lists each problem on its own, as a Status's
`details.causes` does, for clients that print them one per line. `error_for_status` maps an HTTP code
and reason to the class, for backends that talk HTTP.
"""

from __future__ import annotations


class ApiError(Exception):
    code = 500
    reason = "InternalError"
    retryable = False

    def __init__(self, message: str, *, causes: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.causes = causes or [message]


class BadRequest(ApiError):
    code = 400
    reason = "BadRequest"


class Unauthorized(ApiError):
    code = 401
    reason = "Unauthorized"


class Forbidden(ApiError):
    code = 403
    reason = "Forbidden"


class NotFound(ApiError):
    code = 404
    reason = "NotFound"


class MethodNotAllowed(ApiError):
    code = 405
    reason = "MethodNotAllowed"


class AlreadyExists(ApiError):
    code = 409
    reason = "AlreadyExists"


class Conflict(ApiError):
    code = 409
    reason = "Conflict"
    retryable = True


class Gone(ApiError):
    code = 410
    reason = "Expired"
    retryable = True


class Invalid(ApiError):
    code = 422
    reason = "Invalid"


class TooManyRequests(ApiError):
    code = 429
    reason = "TooManyRequests"
    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None, causes: list[str] | None = None) -> None:
        super().__init__(message, causes=causes)
        self.retry_after = retry_after


class ServerError(ApiError):
    """5xx: InternalError, ServiceUnavailable, Timeout ...; the code is the one the server sent."""

    retryable = True

    def __init__(self, message: str, *, code: int = 500, reason: str = "InternalError",
                 causes: list[str] | None = None) -> None:
        super().__init__(message, causes=causes)
        self.code, self.reason = code, reason


_BY_CODE: dict[int, type[ApiError]] = {400: BadRequest, 401: Unauthorized, 403: Forbidden, 404: NotFound,
                                       405: MethodNotAllowed, 410: Gone, 422: Invalid, 429: TooManyRequests}


def error_for_status(code: int, reason: str, message: str, *, causes: list[str] | None = None,
                     retry_after: float | None = None) -> ApiError:
    """The error a response with this HTTP code and Status reason stands for."""
    if code == 409:
        return (AlreadyExists if reason == "AlreadyExists" else Conflict)(message, causes=causes)
    if code == 429:
        return TooManyRequests(message, retry_after=retry_after, causes=causes)
    if code >= 500:
        return ServerError(message, code=code, reason=reason or "InternalError", causes=causes)
    cls = _BY_CODE.get(code)
    if cls is not None:
        return cls(message, causes=causes)
    error = ApiError(message, causes=causes)
    error.code, error.reason = code, reason or "Unknown"
    return error
