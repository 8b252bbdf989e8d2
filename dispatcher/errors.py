"""Errors raised by the dispatcher, grouped by who is at fault.

    DispatcherError
    ├── InvalidInput              the API caller sent a bad value (field, value, code)
    │   └── UrlRejected           a webhook URL breaks the URL policy
    ├── InvalidInputs             several InvalidInput at once, reported together
    ├── NotFound                  the API caller named something that does not exist
    │   └── TenantNotFound
    ├── WebhookNotConfigured      the API caller probed a webhook that has no URL
    ├── StorageError              the platform's database failed
    ├── ConfigurationError        a setting is missing or invalid at start-up
    └── WebhookError              the merchant's side of a call failed
        ├── WebhookTimeout        an attempt ran past the tenant's timeout
        ├── WebhookConnectionError  refused, reset, name resolution failed
        ├── WebhookTLSError       certificate or handshake failure
        ├── BlockedAddress        the merchant host resolves to a forbidden address
        ├── WebhookStatusError    a non-2xx status (redirects included)
        ├── WebhookInvalidResponse  the body is too large or not what the contract says
        └── CircuitOpen           recent calls failed, so this one was not sent

Foreign exceptions (aiohttp, asyncio, SQLAlchemy) are translated into these once, in
the module that meets them, so callers only ever handle this tree.
"""

from __future__ import annotations


class DispatcherError(Exception):
    """Base class of every error the dispatcher raises on purpose."""


class InvalidInput(DispatcherError):
    """A value supplied by an API caller is invalid.

    `field` is the field's name as the caller spelled it, `code` a stable
    machine-readable type such as ``url_private``, and `message` the sentence shown
    to the caller. The message never contains a secret.
    """

    def __init__(self, field: str, message: str, code: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message
        self.code = code


class UrlRejected(InvalidInput):
    """A webhook URL breaks the URL policy (scheme, host or address rules)."""


class InvalidInputs(DispatcherError):
    """Several invalid values in one request, so the caller can fix all at once."""

    def __init__(self, errors: list[InvalidInput]) -> None:
        super().__init__("; ".join(error.message for error in errors))
        self.errors = errors


class NotFound(DispatcherError):
    """The caller named a resource that does not exist."""


class TenantNotFound(NotFound):
    def __init__(self, tenant_id: str) -> None:
        shown = tenant_id if len(tenant_id) <= 64 else tenant_id[:64] + "..."
        super().__init__(f"tenant {shown!r} not found")
        self.tenant_id = tenant_id


class WebhookNotConfigured(DispatcherError):
    """The caller asked to probe a webhook whose URL is not set."""


class StorageError(DispatcherError):
    """The database failed; the platform is at fault, not the caller."""


class ConfigurationError(DispatcherError):
    """A setting is missing or invalid; raised at start-up."""


class WebhookError(DispatcherError):
    """A call to a merchant's webhook failed.

    `code` is the fixed error code the admin test route reports, `retryable` is
    True when the delivery rules allow one more attempt, and `status_code` is set when
    an HTTP response arrived. Messages name the host only, never a URL's path or
    query, because those may carry the merchant's access tokens.
    """

    code = "connection_failed"
    retryable = False

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        # The code of every failed attempt of the call, in order; set by the
        # transport when the call as a whole fails.
        self.attempt_codes: tuple[str, ...] = ()

    @property
    def timed_out_every_attempt(self) -> bool:
        codes = self.attempt_codes or (self.code,)
        return all(code == WebhookTimeout.code for code in codes)


class WebhookTimeout(WebhookError):
    code = "timeout"
    retryable = True


class WebhookConnectionError(WebhookError):
    """No usable connection: refused, reset, or the name did not resolve.

    Retryable only when nothing of a response had arrived yet.
    """

    code = "connection_failed"

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class WebhookTLSError(WebhookError):
    code = "tls_error"


class BlockedAddress(WebhookError):
    """The merchant host resolved to an address the URL policy forbids."""

    code = "blocked_address"


class WebhookStatusError(WebhookError):
    """The merchant responded with a status other than 2xx."""

    code = "http_status"

    def __init__(self, status_code: int) -> None:
        super().__init__(
            f"merchant responded with HTTP {status_code}", status_code=status_code
        )
        self.retryable = status_code >= 500


class WebhookInvalidResponse(WebhookError):
    """The body was too large, not JSON, or not the shape the contract requires."""

    code = "invalid_response"


class CircuitOpen(WebhookError):
    """The tenant webhook's circuit is open: the call failed without being sent."""

    code = "circuit_open"
