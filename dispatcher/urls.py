"""Small URL helpers shared by the webhook calls."""

from __future__ import annotations

from urllib.parse import quote, unquote_plus, urlencode, urlsplit, urlunsplit


def with_query(url: str, params: dict[str, str]) -> str:
    """Append percent-encoded parameters, keeping the URL's own query.

    A parameter of the same name already in the URL is dropped, so the merchant
    never receives two values and reads the wrong one. Spaces become %20 rather than
    "+", which every server decodes the same way.
    """
    parts = urlsplit(url)
    kept = [
        pair
        for pair in parts.query.split("&")
        if pair and unquote_plus(pair.partition("=")[0]) not in params
    ]
    query = "&".join([*kept, urlencode(params, quote_via=quote)])
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))
