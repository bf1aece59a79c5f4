"""Fetching a course document from a URL: internal addresses refused in every spelling and after
redirects, robots.txt honoured, size bounded. A local HTTP server stands in for the web; tests that
reach it allow it explicitly, as an admin would."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer

import pytest

from flexi.rag.fetch import FetchRefused, check_url, fetch_document
from tests.http_helpers import QuietHandler

PAGE = b"<html><body><h1>Pruefungsamt</h1><p>Anmeldung bis 15. Januar.</p></body></html>"


class Site(QuietHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.path == "/robots.txt":
            self._send(200, b"User-agent: *\nDisallow: /private/\n", {"Content-Type": "text/plain"})
        elif self.path == "/page.html":
            self._send(200, PAGE, {"Content-Type": "text/html; charset=utf-8"})
        elif self.path == "/private/page.html":
            self._send(200, b"secret", {"Content-Type": "text/html"})
        elif self.path == "/big":
            self._send(200, b"x" * 50_000, {"Content-Type": "text/plain"})
        elif self.path.startswith("/redirect"):
            target = self.path.split("to=", 1)[1]
            self._send(302, b"", {"Location": target})
        else:
            self._send(404, b"", {})


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Site)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


async def test_an_allowed_internal_page_is_fetched_with_its_name(site: str) -> None:
    got = await fetch_document(site + "/page.html", ["127.0.0.1"], max_bytes=10_000)
    assert got.body == PAGE and got.name == "page.html" and got.media_type == "text/html"


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:{port}/page.html",
    "http://169.254.169.254/latest/meta-data/",
    "http://[::ffff:127.0.0.1]:{port}/page.html",
    "http://2130706433:{port}/page.html",  # 127.0.0.1 as a decimal number
    "http://0x7f.1:{port}/page.html",
    "http://localhost:{port}/page.html",
])
async def test_internal_addresses_are_refused_in_every_spelling(site: str, url: str) -> None:
    port = site.rsplit(":", 1)[1]
    with pytest.raises(FetchRefused, match="private, loopback"):
        await fetch_document(url.format(port=port), [], max_bytes=10_000)


@pytest.mark.parametrize("url", ["http://127.0.0.1:6666\\@1.1.1.1/", "http://user:pw@example.org/",
                                 "file:///etc/passwd", "gopher://example.org/", "http://exa mple.org/"])
def test_ambiguous_or_foreign_urls_are_refused_before_any_connection(url: str) -> None:
    with pytest.raises(FetchRefused):
        check_url(url)


async def test_a_redirect_to_an_internal_address_is_refused(site: str) -> None:
    """The allowed host redirects to one that is not allowed (the metadata address): refused at the hop."""
    with pytest.raises(FetchRefused, match="private, loopback"):
        await fetch_document(site + "/redirect?to=http://169.254.169.254/latest/", ["127.0.0.1"], max_bytes=10_000)


async def test_robots_txt_is_honoured(site: str) -> None:
    with pytest.raises(FetchRefused, match="robots.txt"):
        await fetch_document(site + "/private/page.html", ["127.0.0.1"], max_bytes=10_000)


async def test_a_body_beyond_the_limit_is_refused(site: str) -> None:
    with pytest.raises(FetchRefused, match="larger than"):
        await fetch_document(site + "/big", ["127.0.0.1"], max_bytes=10_000)
