"""Where a pull may connect: public addresses only, unless an admin allow-list names the host.

A pull makes the server fetch a URL a caller chose. Without a check, that turns
the server into a probe of the campus network and of cloud metadata services
(169.254.169.254 hands out credentials). The check runs AFTER DNS, on every
address the name resolves to, for every connection (so also on every redirect
hop), and the connection then goes to exactly the address that was checked: a
name that resolves to a public address for the check and to 127.0.0.1 a moment
later (DNS rebinding) cannot slip through. Host spellings such as
`2130706433`, `0x7f.1` or `[::ffff:127.0.0.1]` need no special parsing:
getaddrinfo turns them into the address they mean, and that address is checked.

Refused: everything that is not globally routable (loopback, RFC 1918, link-local
and so the metadata address, unique-local fc00::/7 and so fd00:ec2::254, CGNAT
100.64/10 and so Alibaba's 100.100.100.200, unspecified, reserved, benchmarking,
documentation), multicast, and IPv6 forms that carry such an IPv4 address
(IPv4-mapped ::ffff:a.b.c.d, 6to4 2002::/16, NAT64 64:ff9b::/96; local-use NAT64
64:ff9b:1::/48 entirely). `FLEXI_PULL_ALLOW_HOSTS` names exceptions: host names
(exactly as in the URL) or addresses/CIDR networks.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass

import httpx

from flexi.engine.types import EngineError

log = logging.getLogger("flexi.pull")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
NAT64 = ipaddress.ip_network("64:ff9b::/96")
NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
MAX_REDIRECTS = 5

REFUSED_MESSAGE = ("pulls from private, loopback, link-local or metadata addresses are not allowed; "
                   "an admin can allow a local mirror with FLEXI_PULL_ALLOW_HOSTS")


class AddressRefused(EngineError):
    """The URL (or a redirect) leads to an address pulls must not reach."""

    def __init__(self, message: str = REFUSED_MESSAGE) -> None:
        super().__init__(message, status=400, code="pull_address_refused")


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, 6to4, NAT64), if any."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def is_public_address(address: IPAddress) -> bool:
    """True only for globally routable unicast addresses (and IPv6 forms of such IPv4 ones)."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id or address in NAT64_LOCAL:
            return False
        inner = embedded_ipv4(address)
        if inner is not None:
            return is_public_address(inner)
    return (address.is_global and not address.is_multicast and not address.is_reserved
            and not address.is_unspecified and not address.is_link_local and not address.is_loopback)


def _normal_host(host: str) -> str:
    return host.strip().strip("[]").rstrip(".").lower()


@dataclass(frozen=True)
class HostPolicy:
    """Which hosts a pull may reach beyond the public internet, and whether plain http is acceptable."""

    names: frozenset[str] = frozenset()
    networks: tuple[IPNetwork, ...] = ()
    insecure: bool = False  # the caller asked for plain http to public hosts (never a downgrade from https)

    @classmethod
    def from_entries(cls, entries: Iterable[str], *, insecure: bool = False) -> HostPolicy:
        """Parse allow-list entries: an address or CIDR network, else a host name."""
        names: set[str] = set()
        networks: list[IPNetwork] = []
        for raw in entries:
            entry = _normal_host(raw)
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                names.add(entry)
        return cls(frozenset(names), tuple(networks), insecure)

    def with_host(self, host: str) -> HostPolicy:
        """This policy plus one trusted host name (the admin-configured Hugging Face endpoint)."""
        return HostPolicy(self.names | {_normal_host(host)}, self.networks, self.insecure)

    def names_host(self, host: str) -> bool:
        return _normal_host(host) in self.names

    def may_allow_http(self, host: str) -> bool:
        """Before DNS: can a plain-http URL to `host` pass at all? (The final word is `check` after DNS.)"""
        if self.insecure or self.names_host(host):
            return True
        try:
            address = ipaddress.ip_address(_normal_host(host))
        except ValueError:
            return bool(self.networks)  # a name: only its addresses can tell
        return self._listed(address)

    def _listed(self, address: IPAddress) -> bool:
        candidates = [address] + ([inner] if (inner := embedded_ipv4(address)) else [])
        return any(a in net for a in candidates for net in self.networks if a.version == net.version)

    def check(self, host: str, scheme: str, addresses: list[IPAddress]) -> None:
        """Raise `AddressRefused` unless every address may be reached with this scheme."""
        if not addresses:
            raise EngineError("download failed: the host name did not resolve", 502, "download_failed")
        if self.names_host(host):
            return
        listed = all(self._listed(a) for a in addresses)
        if not listed and not all(is_public_address(a) or self._listed(a) for a in addresses):
            log.warning("pull refused: %s resolves to %s", host, ", ".join(map(str, addresses)))
            raise AddressRefused()
        if scheme == "http" and not listed and not self.insecure:
            raise AddressRefused("plain http is only allowed for hosts in FLEXI_PULL_ALLOW_HOSTS; use https")


async def resolve(host: str, port: int) -> list[IPAddress]:
    """All addresses `host` resolves to (literal addresses in any spelling included)."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(_normal_host(host), port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        log.warning("pull: cannot resolve %s: %s", host, exc)
        raise EngineError("download failed: the host name did not resolve", 502, "download_failed") from None
    found: list[IPAddress] = []
    for *_, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if isinstance(address, ipaddress.IPv6Address) and len(sockaddr) >= 4 and sockaddr[3]:
            address = ipaddress.IPv6Address(f"{address}%{sockaddr[3]}")  # keep the scope: it marks link-local
        if address not in found:
            found.append(address)
    return found


class GuardedTransport(httpx.AsyncBaseTransport):
    """Resolves and checks the host of every request, then connects to the checked address.

    The request goes to the address itself, with the original Host header and TLS
    server name (SNI, certificate check) kept, so there is no second DNS lookup to
    rebind. Through an egress proxy the proxy connects by name: the check then
    still refuses names that resolve privately here, but pinning is the proxy's job.
    """

    def __init__(self, policy: HostPolicy, proxy: str | None = None) -> None:
        self.policy = policy
        # No keep-alive: the pool keys connections by address, and a TLS connection opened for one host name
        # must not carry a request for another name that happens to share the address.
        self.direct = httpx.AsyncHTTPTransport(trust_env=False, limits=httpx.Limits(max_keepalive_connections=0))
        self.proxy = httpx.AsyncHTTPTransport(proxy=proxy, trust_env=False) if proxy else None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme not in ("http", "https"):
            raise AddressRefused("only http(s) URLs can be pulled")
        port = url.port or (443 if url.scheme == "https" else 80)
        addresses = await resolve(url.host, port)
        self.policy.check(url.host, url.scheme, addresses)
        if self.proxy is not None and not urllib.request.proxy_bypass_environment(url.host):
            return await self.proxy.handle_async_request(request)
        pinned = httpx.Request(request.method, url.copy_with(host=str(addresses[0]).split("%", 1)[0]),
                               headers=request.headers, stream=request.stream,
                               extensions={**request.extensions, "sni_hostname": url.host})
        return await self.direct.handle_async_request(pinned)

    async def aclose(self) -> None:
        await self.direct.aclose()
        if self.proxy is not None:
            await self.proxy.aclose()


def _env_proxy() -> str | None:
    """The egress proxy from the environment (HTTPS_PROXY/ALL_PROXY), which pulls have always honoured."""
    proxies = urllib.request.getproxies()
    return proxies.get("https") or proxies.get("all")


def guarded_client(policy: HostPolicy, timeout: httpx.Timeout) -> httpx.AsyncClient:
    """An HTTP client whose every connection (every redirect hop included) passes `policy`."""
    return httpx.AsyncClient(transport=GuardedTransport(policy, _env_proxy()), timeout=timeout, trust_env=False,
                             max_redirects=MAX_REDIRECTS)
