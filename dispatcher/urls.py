"""Small URL helpers shared by the webhook calls."""

from __future__ import annotations

from urllib.parse import quote, urlencode, urlsplit, urlunsplit


def with_query(url: str, params: dict[str, str]) -> str:
    """Append percent-encoded parameters, keeping the URL's own query.

    Spaces become %20 rather than "+", which every server decodes the same way.
    """
    parts = urlsplit(url)
    extra = urlencode(params, quote_via=quote)
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))
