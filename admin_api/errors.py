"""Error responses in the FastAPI shape the real platform uses.

`{"detail": "message"}` for most errors, and for invalid input a 422 with
`{"detail": [{"loc": ["body", "field"], "msg": "...", "type": "..."}]}`. One
middleware maps every dispatcher error to its HTTP response, so handlers only raise.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import structlog
from aiohttp import web
from pydantic import BaseModel, TypeAdapter, ValidationError

from dispatcher.errors import (
    InvalidInput,
    InvalidInputs,
    NotFound,
    StorageError,
    WebhookNotConfigured,
)

log = structlog.get_logger("admin_api")

ModelT = TypeVar("ModelT", bound=BaseModel)
T = TypeVar("T")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Fields whose submitted values are never echoed back in an error, because they
# are secrets or URLs whose paths and queries may carry tokens.
_UNECHOED_FIELDS = frozenset({"secret", "products_url", "cart_url", "cart_get_url"})
_MAX_ECHO_CHARACTERS = 80


class HTTPError(Exception):
    """An error response with a status and a plain `detail` message."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or {}


class RequestValidationError(Exception):
    """Invalid request input, already in FastAPI's `detail` item shape."""

    def __init__(self, items: list[dict[str, Any]]) -> None:
        super().__init__(items)
        self.items = items


def detail_response(status: int, detail: object, **extra: Any) -> web.Response:
    return web.json_response({"detail": detail, **extra}, status=status)


async def read_json(request: web.Request) -> Any:
    """Return the request body parsed as JSON, or raise a 422 naming the problem.

    NaN and Infinity are rejected, because they are not JSON and would reach
    arithmetic downstream.
    """
    raw = await request.read()
    if not raw.strip():
        raise RequestValidationError(
            [
                {
                    "loc": ["body"],
                    "msg": "Field required: the body is empty",
                    "type": "missing",
                }
            ]
        )
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
        # A \ud800-style escape decodes to a lone surrogate, which cannot be
        # encoded as UTF-8 later (in a stored cart or a body sent to a merchant).
        json.dumps(data, ensure_ascii=False).encode("utf-8")
        return data
    except UnicodeEncodeError:
        problem, position = "the body escapes an unpaired UTF-16 surrogate", 0
    except UnicodeDecodeError:
        problem, position = "the body is not valid UTF-8", 0
    except json.JSONDecodeError as exc:
        problem, position = exc.msg, exc.pos
    except ValueError as exc:
        problem, position = str(exc), 0
    except RecursionError:
        problem, position = "the body nests too deeply", 0
    raise RequestValidationError(
        [
            {
                "loc": ["body", position],
                "msg": f"JSON decode error: {problem}",
                "type": "json_invalid",
            }
        ]
    )


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_model(model: type[ModelT], data: Any, location: str = "body") -> ModelT:
    """Validate `data` into `model`, turning pydantic errors into a 422.

    `location` starts each error's `loc`: "body", or "query" for parameters.
    """
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationError(
            [_pydantic_item(error, location) for error in exc.errors()]
        ) from None


def parse_tagged_union(adapter: TypeAdapter[T], data: Any) -> T:
    """Validate a union discriminated by `action`, reporting fields as sent.

    pydantic puts the tag first in each error's location (`add.sku`). The caller
    sent a flat object, so the tag is dropped, and a bad tag is reported on
    `action` itself.
    """
    try:
        return adapter.validate_python(data)
    except ValidationError as exc:
        items = []
        for error in exc.errors():
            if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
                error["loc"] = ("action",)
                error["input"] = data.get("action") if isinstance(data, dict) else data
            else:
                error["loc"] = error["loc"][1:]
            items.append(_pydantic_item(error))
        raise RequestValidationError(items) from None


def _pydantic_item(error: Any, location: str = "body") -> dict[str, Any]:
    loc = [location, *error["loc"]]
    field = ".".join(str(part) for part in error["loc"]) or "body"
    message = f"{field}: {error['msg']}"
    top = str(error["loc"][0]) if error["loc"] else ""
    if error["type"] != "missing" and top not in _UNECHOED_FIELDS:
        shown = _shown_input(error.get("input"))
        if len(shown) > _MAX_ECHO_CHARACTERS:
            shown = shown[:_MAX_ECHO_CHARACTERS] + "..."
        message += f", got {shown}"
    return {"loc": loc, "msg": message, "type": error["type"]}


def _shown_input(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (RecursionError, ValueError):
        # Input nested close to the recursion limit parsed, but one more level
        # of serialisation does not fit.
        return f"a {type(value).__name__}"


def _invalid_input_item(error: InvalidInput) -> dict[str, Any]:
    return {"loc": ["body", error.field], "msg": error.message, "type": error.code}


@web.middleware
async def error_middleware(
    request: web.Request, handler: Handler
) -> web.StreamResponse:
    """Bind a request id for logging and turn every error into a JSON response."""
    request_id = uuid.uuid4().hex
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=request_id)
    try:
        response = await handler(request)
    except HTTPError as exc:
        response = detail_response(exc.status, exc.detail)
        response.headers.update(exc.headers)
    except RequestValidationError as exc:
        response = detail_response(422, exc.items)
    except InvalidInputs as exc:
        response = detail_response(422, [_invalid_input_item(e) for e in exc.errors])
    except InvalidInput as exc:
        response = detail_response(422, [_invalid_input_item(exc)])
    except NotFound as exc:
        response = detail_response(404, str(exc))
    except WebhookNotConfigured as exc:
        response = detail_response(400, str(exc))
    except StorageError as exc:
        log.error("api.storage_failed", error=str(exc), path=request.path)
        response = detail_response(503, "database unavailable", request_id=request_id)
    except web.HTTPException as exc:
        response = detail_response(exc.status, exc.reason)
    except ConnectionError as exc:
        # The client went away while sending its body; no response can reach it.
        log.info("api.client_disconnected", error=type(exc).__name__, path=request.path)
        response = detail_response(400, "connection closed before the body was read")
    except Exception:
        log.exception("api.unexpected_error", path=request.path, method=request.method)
        response = detail_response(500, "internal error", request_id=request_id)
    response.headers["X-Request-Id"] = request_id
    return response
