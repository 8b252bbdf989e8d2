"""Strict parsing of merchant response bodies."""

from __future__ import annotations

import json
from typing import Any

from dispatcher.errors import WebhookInvalidResponse


def _reject_constant(name: str) -> Any:
    raise WebhookInvalidResponse(f"body contains {name}, which is not valid JSON")


def load_json_body(body: bytes) -> Any:
    """Parse JSON, rejecting NaN and Infinity, invalid UTF-8 and deep nesting."""
    try:
        text = body.decode("utf-8")
        return json.loads(text, parse_constant=_reject_constant)
    except UnicodeDecodeError as exc:
        raise WebhookInvalidResponse("body is not valid UTF-8") from exc
    except json.JSONDecodeError as exc:
        raise WebhookInvalidResponse(f"body is not valid JSON: {exc.msg}") from exc
    except ValueError as exc:
        # An integer literal longer than Python's int_max_str_digits (4300 digits).
        raise WebhookInvalidResponse("body contains an oversized number") from exc
    except RecursionError as exc:
        raise WebhookInvalidResponse("body nests JSON too deeply") from exc
