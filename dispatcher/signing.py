"""HMAC-SHA256 request signing, as merchants verify it.

The signed string is ``"{timestamp}.{body}"`` over the exact body bytes sent, and
the key is the tenant's webhook secret. The digest goes out as lowercase hex in
``X-VIZOCHOK-Signature: sha256=<hex>`` beside ``X-VIZOCHOK-Timestamp``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

SIGNATURE_HEADER = "X-VIZOCHOK-Signature"
TIMESTAMP_HEADER = "X-VIZOCHOK-Timestamp"
REQUEST_ID_HEADER = "X-VIZOCHOK-Request-Id"

# Receivers reject timestamps further than this from their own clock, which bounds
# how long a captured request can be replayed.
SIGNATURE_TOLERANCE_SECONDS = 300


def encode_body(payload: Any) -> bytes:
    """Serialise a JSON body once: compact, UTF-8, non-ASCII left unescaped.

    The same bytes are signed and sent, because merchants verify the raw body.
    """
    return json.dumps(
        payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False
    ).encode("utf-8")


def compute_signature(secret: str, timestamp: str, body: bytes) -> str:
    """Return the ``sha256=<hex>`` header value for one attempt."""
    message = timestamp.encode("ascii") + b"." + body
    digest = hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def signature_headers(
    secret: str, body: bytes, now: float | None = None
) -> dict[str, str]:
    """Return the timestamp and signature headers for one attempt at `body`."""
    timestamp = str(int(time.time() if now is None else now))
    return {
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: compute_signature(secret, timestamp, body),
    }


def verify_signature(
    secret: str,
    body: bytes,
    timestamp: str | None,
    signature: str | None,
    *,
    now: float | None = None,
    tolerance: int = SIGNATURE_TOLERANCE_SECONDS,
) -> bool:
    """Return True if the headers sign `body` with `secret` within the tolerance.

    This is the merchant's side; the sample merchant and the tests use it.
    """
    if not timestamp or not signature:
        return False
    # Twelve digits reach the year 33658; a longer value is garbage, and int()
    # would raise on a hostile header of thousands of digits.
    if len(timestamp) > 12 or not (timestamp.isascii() and timestamp.isdigit()):
        return False
    current = time.time() if now is None else now
    if abs(current - int(timestamp)) > tolerance:
        return False
    expected = compute_signature(secret, timestamp, body)
    return hmac.compare_digest(expected.encode(), signature.encode())
