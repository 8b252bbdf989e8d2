"""Query parameters added to the cart GET URL."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

from dispatcher.urls import with_query


def test_keeps_existing_query():
    """Parameters the configured URL already has are kept, in order."""
    url = with_query("https://shop.test/cart?shop=1&lang=uk", {"store_id": "s"})
    assert parse_qsl(urlsplit(url).query) == [
        ("shop", "1"),
        ("lang", "uk"),
        ("store_id", "s"),
    ]


def test_replaces_same_name():
    """A configured store_id is replaced, so the merchant sees one value."""
    url = with_query(
        "https://shop.test/cart?keep=1&store_id=EVIL",
        {"store_id": "s1", "session_id": "u"},
    )
    assert parse_qsl(urlsplit(url).query) == [
        ("keep", "1"),
        ("store_id", "s1"),
        ("session_id", "u"),
    ]


def test_percent_encodes_values():
    """Spaces, ampersands and non-ASCII are percent-encoded, spaces as %20."""
    url = with_query("https://shop.test/cart", {"session_id": "a b&c=д"})
    assert urlsplit(url).query == "session_id=a%20b%26c%3D%D0%B4"
