"""Strict parsing of merchant response bodies."""

from __future__ import annotations

import json
import math
from typing import Any, TypeGuard

from dispatcher.errors import WebhookInvalidResponse

# Integer literals longer than this are not parsed as int: Python refuses more than
# 4300 digits, and any such value is far outside what a price can be anyway.
_MAX_INTEGER_DIGITS = 400


def _reject_constant(name: str) -> Any:
    raise WebhookInvalidResponse(f"body contains {name}, which is not valid JSON")


def _nonfinite_constant(name: str) -> float:
    return math.nan


def _bounded_int(literal: str) -> int | float:
    if len(literal.lstrip("-")) > _MAX_INTEGER_DIGITS:
        return math.nan
    return int(literal)


def load_json_body(body: bytes, *, invalid_numbers_as_nan: bool = False) -> Any:
    """Parse JSON, rejecting invalid UTF-8 and deep nesting.

    NaN, Infinity and overlong integer literals reject the whole body, unless
    `invalid_numbers_as_nan` is set: then each becomes a float NaN, so that
    per-entry validation can reject only the entry holding it.
    """
    if invalid_numbers_as_nan:
        options: dict[str, Any] = {
            "parse_constant": _nonfinite_constant,
            "parse_int": _bounded_int,
        }
    else:
        options = {"parse_constant": _reject_constant}
    try:
        text = body.decode("utf-8")
        return json.loads(text, **options)
    except UnicodeDecodeError as exc:
        raise WebhookInvalidResponse("body is not valid UTF-8") from exc
    except json.JSONDecodeError as exc:
        raise WebhookInvalidResponse(f"body is not valid JSON: {exc.msg}") from exc
    except ValueError as exc:
        # An integer literal longer than Python's int_max_str_digits (4300 digits).
        raise WebhookInvalidResponse("body contains an oversized number") from exc
    except RecursionError as exc:
        raise WebhookInvalidResponse("body nests JSON too deeply") from exc


def is_number_within(value: object, maximum: float) -> TypeGuard[int | float]:
    """Return whether `value` is a JSON number in (0, maximum]; NaN is not.

    Comparisons between int and float are exact in Python, so this also holds
    for integers beyond a double's range.
    """
    # bool is an int subclass in Python but a distinct JSON type: true is not 1.
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return 0 < value <= maximum
