"""Who is really asking: the client's address and the request's own origin behind trusted proxies.

Behind a reverse proxy every connection comes from the proxy; its `X-Forwarded-For`,
`-Proto` and `-Host` headers say who the client is and which URL it used. Any client can
send those headers too, so they count only when the connection itself comes from an
address in `FLEXI_TRUSTED_PROXIES` (default: none). Uvicorn's own proxy-header handling
is switched off (it trusts 127.0.0.1 by default, which on a shared host means every local
user): this module is the one place that decides, and everything that keys on a client
(sign-in throttling, pending sign-ins, the fair queue with auth=off) asks it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Headers = Iterable[tuple[bytes, bytes]]
DEFAULT_PORTS = {"http": 80, "https": 443}


@lru_cache(maxsize=16)
def trusted_networks(entries: tuple[str, ...]) -> tuple[Network, ...]:
    """FLEXI_TRUSTED_PROXIES entries (addresses or CIDRs) as networks; raises ValueError on a bad one."""
    return tuple(ipaddress.ip_network(entry.strip(), strict=False) for entry in entries if entry.strip())


def parse_ip(text: str) -> Address | None:
    """An address as proxies write it: `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`, `[2001:db8::1]:443`;
    IPv4-mapped IPv6 (`::ffff:1.2.3.4`) counts as the IPv4 address. None if it is none of these."""
    text = text.strip().strip('"')
    if text.startswith("["):
        text = text[1:].split("]", 1)[0]
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def is_trusted(peer: str | None, trusted: Sequence[Network]) -> bool:
    addr = parse_ip(peer) if peer else None
    return addr is not None and any(addr in net for net in trusted)


def _header_values(headers: Headers, name: bytes) -> list[str]:
    """All comma-separated values of a header, across repeated header lines, in order."""
    out: list[str] = []
    for key, value in headers:
        if key.lower() == name:
            out.extend(part.strip() for part in value.decode("latin-1").split(","))
    return [v for v in out if v]


def client_address(headers: Headers, peer: str | None, trusted: Sequence[Network]) -> str:
    """The address of the client behind any trusted proxies.

    The connection's peer is the client unless it is a trusted proxy; then `X-Forwarded-For`
    is read from the right (each proxy appends the address it saw) and the first address that
    is not a trusted proxy is the client. Entries further left were written by the client
    itself and prove nothing. A malformed entry stops the walk at the last address known good.
    """
    current = peer or "unknown"
    if not is_trusted(peer, trusted):
        return current
    for entry in reversed(_header_values(headers, b"x-forwarded-for")):
        addr = parse_ip(entry)
        if addr is None:
            return current
        current = str(addr)
        if not any(addr in net for net in trusted):
            return current
    return current


def address_key(address: str) -> str:
    """What one client is for per-address limits: the address, or its /64 for IPv6 (one
    household or device gets a whole /64, so single IPv6 addresses are free to an attacker)."""
    addr = parse_ip(address)
    if isinstance(addr, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((addr, 64), strict=False))
    return str(addr) if addr is not None else address


def normalize_origin(scheme: str, host: str) -> str:
    """`scheme://host[:port]` as browsers write `Origin`: lower case, default port left out."""
    scheme, host = scheme.strip().lower(), host.strip().lower()
    name, port = host, ""
    if host.startswith("["):
        end = host.find("]")
        name, port = host[: end + 1], host[end + 2:] if host[end + 1: end + 2] == ":" else ""
    elif host.count(":") == 1:
        name, port = host.split(":")
    if port and port == str(DEFAULT_PORTS.get(scheme, -1)):
        port = ""
    return f"{scheme}://{name}" + (f":{port}" if port else "")


def origin_of_url(url: str | None) -> str | None:
    """The origin of a configured URL such as FLEXI_PUBLIC_URL (`https://llm.uni.example/flexi` →
    `https://llm.uni.example`), or None."""
    if not url or "://" not in url:
        return None
    scheme, rest = url.split("://", 1)
    host = rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    if "@" in host or not host or scheme.lower() not in DEFAULT_PORTS:
        return None
    return normalize_origin(scheme, host)


def request_scheme(scope: dict[str, Any], trusted: Sequence[Network]) -> str:
    """http or https as the client used it: the connection's, or a trusted proxy's `X-Forwarded-Proto`."""
    peer = (scope.get("client") or (None, None))[0]
    if is_trusted(peer, trusted):
        forwarded = _header_values(scope.get("headers", []), b"x-forwarded-proto")
        if forwarded and forwarded[-1].lower() in DEFAULT_PORTS:
            return forwarded[-1].lower()
    return str(scope.get("scheme", "http"))


def request_origin(scope: dict[str, Any], trusted: Sequence[Network]) -> str | None:
    """The origin the client addressed: `X-Forwarded-Proto`/`-Host` from a trusted proxy,
    otherwise the connection's scheme and the `Host` header. None without a host."""
    headers = scope.get("headers", [])
    host = None
    peer = (scope.get("client") or (None, None))[0]
    if is_trusted(peer, trusted):
        forwarded = _header_values(headers, b"x-forwarded-host")
        host = forwarded[-1] if forwarded else None
    if host is None:
        host = next((v.decode("latin-1") for k, v in headers if k.lower() == b"host"), None)
    if not host or any(c in host for c in "/\\@ ") or any(ord(c) < 33 for c in host):
        return None
    return normalize_origin(request_scheme(scope, trusted), host)


def client_address_of(scope: dict[str, Any], trusted_proxies: Sequence[str]) -> str:
    """`client_address` for an ASGI scope (or a Starlette request's `.scope`)."""
    peer = (scope.get("client") or (None, None))[0]
    return client_address(scope.get("headers", []), peer, trusted_networks(tuple(trusted_proxies)))
