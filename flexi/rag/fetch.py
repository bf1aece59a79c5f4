"""Fetch a course document from a URL a teacher gave, without letting that URL reach the campus network.

The teacher names the URL, the server fetches it: the same server-side request forgery risk as model
pulls (Open WebUI had several CVEs here). So every connection - the page, robots.txt and each redirect
hop - goes through `flexi.store.netguard` (resolved, checked, pinned: loopback, private, link-local and
metadata addresses are refused in every spelling, also after a redirect or a DNS change), and only the
hosts an admin lists in FLEXI_DOCUMENT_URL_ALLOW_HOSTS may be internal. URLs with credentials or
backslashes are refused before anything is fetched: parsers disagree on where their host is
(`http://127.0.0.1:6666\\@1.1.1.1`), and a teacher's link never needs either. The page's robots.txt is
honoured, and the body is cut off at FLEXI_DOCUMENT_MAX_BYTES.
"""

from __future__ import annotations

import posixpath
import urllib.robotparser
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import httpx

from flexi.engine.types import BadRequest, EngineError
from flexi.store.netguard import AddressRefused, HostPolicy, guarded_client

USER_AGENT = "FlexiCourseDocuments/1.0"
ROBOTS_MAX_BYTES = 512 * 1024


class FetchRefused(BadRequest):
    """The URL may not be fetched (its address, scheme, form or robots.txt forbid it)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, param="url")
        self.code = "document_url_refused"


@dataclass(frozen=True)
class Fetched:
    url: str  # after redirects
    name: str  # a file name for the document list (from the URL path)
    media_type: str
    body: bytes


def check_url(url: str) -> httpx.URL:
    """The URL as httpx will fetch it, or a clear refusal of forms a teacher's link never has."""
    if not isinstance(url, str) or not url.strip() or len(url) > 2048:
        raise FetchRefused("the URL must be an http(s) address of at most 2048 characters")
    raw = url.strip()
    if "\\" in raw or any(ord(c) < 33 for c in raw):
        raise FetchRefused("the URL contains backslashes, spaces or control characters")
    parts = urlsplit(raw)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise FetchRefused("only http and https URLs with a host can be fetched")
    if "@" in parts.netloc:
        raise FetchRefused("URLs with a user name or password are not fetched")
    return httpx.URL(raw)


def _name_of(url: httpx.URL) -> str:
    base = posixpath.basename(unquote(url.path).rstrip("/"))
    return (base or url.host or "document")[:200]


async def fetch_document(url: str, allow_hosts: list[str], max_bytes: int, timeout: float = 30.0) -> Fetched:
    """GET `url` under the address policy and robots.txt, at most `max_bytes` of body."""
    target = check_url(url)
    policy = HostPolicy.from_entries(allow_hosts, insecure=True)  # plain http to public hosts is fine for a web page
    try:
        async with guarded_client(policy, httpx.Timeout(timeout)) as client:
            client.headers["user-agent"] = USER_AGENT
            await _check_robots(client, target)
            async with client.stream("GET", target, follow_redirects=True) as response:
                if response.status_code != 200:
                    raise EngineError(f"the URL answered with HTTP {response.status_code}", 502, "document_fetch_failed")
                declared = response.headers.get("content-length")
                if declared is not None and declared.isdigit() and int(declared) > max_bytes:
                    raise FetchRefused(f"the document is larger than {max_bytes} bytes (FLEXI_DOCUMENT_MAX_BYTES)")
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > max_bytes:
                        raise FetchRefused(f"the document is larger than {max_bytes} bytes (FLEXI_DOCUMENT_MAX_BYTES)")
                media_type = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
                return Fetched(str(response.url), _name_of(response.url), media_type, bytes(body))
    except AddressRefused:
        raise FetchRefused("this URL leads to a private, loopback, link-local or metadata address; an admin can "
                           "allow an internal host with FLEXI_DOCUMENT_URL_ALLOW_HOSTS") from None
    except httpx.TooManyRedirects:
        raise FetchRefused("the URL redirects too often") from None
    except httpx.HTTPError as exc:
        raise EngineError(f"the URL could not be fetched ({type(exc).__name__})", 502, "document_fetch_failed") from None


async def _check_robots(client: httpx.AsyncClient, target: httpx.URL) -> None:
    """Honour the site's robots.txt for our user agent (a missing or unreadable one allows everything)."""
    robots_url = target.copy_with(path="/robots.txt", query=None, fragment=None)
    try:
        response = await client.get(robots_url, follow_redirects=True)
    except AddressRefused:
        raise
    except httpx.HTTPError:
        return
    if response.status_code != 200 or len(response.content) > ROBOTS_MAX_BYTES:
        return
    parser = urllib.robotparser.RobotFileParser()
    parser.parse(response.text.splitlines())
    if not parser.can_fetch(USER_AGENT, str(target)):
        raise FetchRefused("the site's robots.txt does not allow fetching this page")
