"""Tests for HMAC-SHA256 request signing, checked against an independent verifier."""

from __future__ import annotations

import hashlib
import hmac
import json
import string
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dispatcher.signing import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    compute_signature,
    encode_body,
    signature_headers,
    verify_signature,
)

SECRET = "whsec_test_0123456789abcdef"
NOW = 1_700_000_000
PAYLOAD = {"action": "add", "name": "Молоко 🥛", "sku": "milk-001"}
# The compact UTF-8 JSON of PAYLOAD, written out by hand.
PAYLOAD_BYTES = '{"action":"add","name":"Молоко 🥛","sku":"milk-001"}'.encode()


def reference_signature(secret: str, timestamp: str, body: bytes) -> str:
    """Return the signature header value as the webhook contract defines it.

    The signed string is "{timestamp}.{body}" over the raw body bytes, the key is the
    webhook secret, and the value is "sha256=" and the lowercase hex HMAC-SHA256.
    """
    message = f"{timestamp}.".encode() + body
    digest = hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()
    return "sha256=" + digest


def reference_verify(secret: str, body: bytes, headers: dict[str, str]) -> bool:
    """Return whether `headers` sign `body` with `secret`, as a merchant checks it."""
    expected = reference_signature(secret, headers[TIMESTAMP_HEADER], body)
    return hmac.compare_digest(expected, headers[SIGNATURE_HEADER])


# --- Reference vectors ----------------------------------------------------------


def test_reference_signature_known_vector() -> None:
    """The test's own verifier matches a digest computed with openssl dgst -hmac."""
    # printf '%s' '1700000000.{"action":"add","name":"Молоко 🥛","sku":"milk-001"}' \
    #   | openssl dgst -sha256 -hmac 'whsec_test_0123456789abcdef'
    expected = "sha256=d3d48935c77fa0e87a2455553c9df0bd10039a3a84d8a36fdd1eea0b1dfd8e5d"
    assert reference_signature(SECRET, str(NOW), PAYLOAD_BYTES) == expected


def test_compute_signature_known_vector() -> None:
    """compute_signature reproduces the openssl digest for a Cyrillic and emoji body."""
    expected = "sha256=d3d48935c77fa0e87a2455553c9df0bd10039a3a84d8a36fdd1eea0b1dfd8e5d"
    assert compute_signature(SECRET, str(NOW), PAYLOAD_BYTES) == expected


def test_compute_signature_empty_body() -> None:
    """An empty body, as on cart GET, signs the string "{timestamp}."."""
    # printf '%s' '1700000000.' \
    #   | openssl dgst -sha256 -hmac 'whsec_test_0123456789abcdef'
    expected = "sha256=814e706027d44b6013448b27b12c76ad281f72d11fcf05d71e1ef85b69465064"
    assert compute_signature(SECRET, str(NOW), b"") == expected


# --- compute_signature and signature_headers ------------------------------------


@given(
    st.text(string.printable.strip(), min_size=16, max_size=256),
    st.integers(0, 10**11).map(str),
    st.binary(max_size=2048),
)
def test_compute_signature_matches_reference(
    secret: str, timestamp: str, body: bytes
) -> None:
    """compute_signature equals the contract's HMAC for any secret, time and body."""
    assert compute_signature(secret, timestamp, body) == reference_signature(
        secret, timestamp, body
    )


def test_compute_signature_lowercase_hex() -> None:
    """The digest is 64 lowercase hexadecimal characters after "sha256="."""
    value = compute_signature(SECRET, str(NOW), PAYLOAD_BYTES)
    prefix, _, digest = value.partition("=")
    assert prefix == "sha256"
    assert len(digest) == 64
    assert set(digest) <= set("0123456789abcdef")


def test_signature_headers_names() -> None:
    """The headers are exactly X-VIZOCHOK-Timestamp and X-VIZOCHOK-Signature."""
    headers = signature_headers(SECRET, PAYLOAD_BYTES, now=NOW)
    assert set(headers) == {"X-VIZOCHOK-Timestamp", "X-VIZOCHOK-Signature"}


def test_signature_headers_timestamp_whole_seconds() -> None:
    """The timestamp is the Unix time in whole seconds, as a decimal string."""
    headers = signature_headers(SECRET, PAYLOAD_BYTES, now=NOW + 0.999)
    assert headers[TIMESTAMP_HEADER] == str(NOW)


def test_signature_headers_match_reference() -> None:
    """The signature header verifies with the independent verifier."""
    body = encode_body(PAYLOAD)
    headers = signature_headers(SECRET, body, now=NOW)
    assert reference_verify(SECRET, body, headers)


def test_signature_headers_known_vector() -> None:
    """The signature over the encoded payload equals the openssl digest."""
    headers = signature_headers(SECRET, encode_body(PAYLOAD), now=NOW)
    assert headers[SIGNATURE_HEADER] == (
        "sha256=d3d48935c77fa0e87a2455553c9df0bd10039a3a84d8a36fdd1eea0b1dfd8e5d"
    )


def test_signature_headers_reads_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without `now` the timestamp comes from time.time()."""
    monkeypatch.setattr(time, "time", lambda: 1_712_345_678.25)
    headers = signature_headers(SECRET, PAYLOAD_BYTES)
    assert headers[TIMESTAMP_HEADER] == "1712345678"
    assert reference_verify(SECRET, PAYLOAD_BYTES, headers)


def test_reference_verify_rejects_wrong_secret() -> None:
    """The independent verifier rejects the headers under another secret."""
    headers = signature_headers(SECRET, PAYLOAD_BYTES, now=NOW)
    assert not reference_verify(SECRET + "x", PAYLOAD_BYTES, headers)


# --- encode_body ----------------------------------------------------------------


def test_encode_body_compact() -> None:
    """The JSON has no whitespace after its separators."""
    body = encode_body({"skus": ["milk-001", "milk-002"], "store_id": "store-1"})
    assert body == b'{"skus":["milk-001","milk-002"],"store_id":"store-1"}'


def test_encode_body_keeps_non_ascii() -> None:
    """Cyrillic and emoji are written as raw UTF-8, not as \\u escapes."""
    assert encode_body(PAYLOAD) == PAYLOAD_BYTES


def test_encode_body_no_escapes() -> None:
    """The encoded body contains no \\u escape sequences."""
    assert b"\\u" not in encode_body(PAYLOAD)


def test_encode_body_round_trips() -> None:
    """Decoding the body gives back the payload."""
    assert json.loads(encode_body(PAYLOAD)) == PAYLOAD


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_encode_body_rejects_non_finite(value: float) -> None:
    """NaN and infinities, which are not JSON, raise ValueError."""
    with pytest.raises(ValueError):
        encode_body({"price": value})


# --- verify_signature -----------------------------------------------------------


def signed_headers(
    body: bytes = PAYLOAD_BYTES, timestamp: int = NOW
) -> tuple[str, str]:
    """Return (timestamp, signature) for `body`, made with the reference signer."""
    return str(timestamp), reference_signature(SECRET, str(timestamp), body)


def test_verify_signature_accepts_valid() -> None:
    """A correct signature with a current timestamp verifies."""
    timestamp, signature = signed_headers()
    assert verify_signature(SECRET, PAYLOAD_BYTES, timestamp, signature, now=NOW)


def test_verify_signature_accepts_own_headers() -> None:
    """Headers from signature_headers verify."""
    headers = signature_headers(SECRET, PAYLOAD_BYTES, now=NOW)
    assert verify_signature(
        SECRET,
        PAYLOAD_BYTES,
        headers[TIMESTAMP_HEADER],
        headers[SIGNATURE_HEADER],
        now=NOW,
    )


def test_verify_signature_rejects_wrong_secret() -> None:
    """A signature made with another secret is rejected."""
    timestamp, signature = signed_headers()
    assert not verify_signature(
        "whsec_other_0123456789abcdef", PAYLOAD_BYTES, timestamp, signature, now=NOW
    )


def test_verify_signature_rejects_modified_body() -> None:
    """A body changed after signing is rejected."""
    timestamp, signature = signed_headers()
    modified = PAYLOAD_BYTES.replace(b"milk-001", b"milk-002")
    assert not verify_signature(SECRET, modified, timestamp, signature, now=NOW)


def test_verify_signature_rejects_reencoded_body() -> None:
    """The same JSON with escaped non-ASCII is different bytes and is rejected."""
    timestamp, signature = signed_headers()
    escaped = json.dumps(PAYLOAD, separators=(",", ":")).encode("ascii")
    assert not verify_signature(SECRET, escaped, timestamp, signature, now=NOW)


@pytest.mark.parametrize("offset", [-301, 301, -10_000, 10_000])
def test_verify_signature_rejects_stale_timestamp(offset: int) -> None:
    """A timestamp more than 300 s before or after the clock is rejected."""
    timestamp, signature = signed_headers(timestamp=NOW + offset)
    assert not verify_signature(SECRET, PAYLOAD_BYTES, timestamp, signature, now=NOW)


@pytest.mark.parametrize("offset", [-300, 300])
def test_verify_signature_accepts_tolerance_edge(offset: int) -> None:
    """A timestamp exactly 300 s from the clock is still accepted."""
    timestamp, signature = signed_headers(timestamp=NOW + offset)
    assert verify_signature(SECRET, PAYLOAD_BYTES, timestamp, signature, now=NOW)


@pytest.mark.parametrize(
    "timestamp",
    [
        "-1700000000",
        "+1700000000",
        "1700000000.0",
        " 1700000000",
        "1700000000\n",
        "1_700_000_000",
        "0x6553f100",
        "１７０００００００００",  # noqa: RUF001 - fullwidth digits on purpose
        "abc",
    ],
)
def test_verify_signature_rejects_non_digit_timestamp(timestamp: str) -> None:
    """A timestamp that is not ASCII decimal digits is rejected."""
    signature = reference_signature(SECRET, timestamp, PAYLOAD_BYTES)
    assert not verify_signature(SECRET, PAYLOAD_BYTES, timestamp, signature, now=NOW)


@pytest.mark.parametrize(
    ("timestamp", "signature"),
    [
        (None, signed_headers()[1]),
        ("", signed_headers()[1]),
        (str(NOW), None),
        (str(NOW), ""),
        (None, None),
    ],
)
def test_verify_signature_rejects_missing_header(
    timestamp: str | None, signature: str | None
) -> None:
    """A missing or empty timestamp or signature header is rejected."""
    assert not verify_signature(SECRET, PAYLOAD_BYTES, timestamp, signature, now=NOW)


@pytest.mark.parametrize(
    "signature",
    [
        signed_headers()[1].upper(),
        signed_headers()[1].removeprefix("sha256="),
        signed_headers()[1][:-1],
        "sha1=" + signed_headers()[1].removeprefix("sha256="),
    ],
)
def test_verify_signature_rejects_malformed_signature(signature: str) -> None:
    """An uppercase, unprefixed, truncated or sha1-labelled signature is rejected."""
    assert not verify_signature(SECRET, PAYLOAD_BYTES, str(NOW), signature, now=NOW)


def test_verify_signature_rejects_huge_timestamp() -> None:
    """A timestamp of thousands of digits is rejected rather than raising."""
    assert not verify_signature(SECRET, PAYLOAD_BYTES, "1" * 5000, "sha256=0", now=NOW)
