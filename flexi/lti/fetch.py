"""Every request Flexi makes to a platform (its openid-configuration, registration endpoint, signing keys)
goes through the network guard (`flexi.store.netguard`): each address checked and pinned, redirects
followed hop by hop. Private, loopback and link-local hosts need FLEXI_LTI_ALLOW_HOSTS (a campus Moodle),
so a forged registration URL cannot make Flexi probe the campus network or cloud metadata; the hosts of
platforms an administrator registered by hand count as allowed. Bodies are bounded; upstream errors
are not echoed to the browser."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

import httpx

from flexi.engine.types import EngineError
from flexi.lti.errors import LtiError
from flexi.store.netguard import HostPolicy, guarded_client

MAX_BYTES = 256 * 1024
TIMEOUT = httpx.Timeout(10.0)
log = logging.getLogger("flexi.lti")


def policy(allow_hosts: Iterable[str], trusted_url: str | None = None) -> HostPolicy:
    result = HostPolicy.from_entries(allow_hosts)
    host = urlsplit(trusted_url).hostname if trusted_url else None
    return result.with_host(host) if host else result


async def request_json(method: str, url: str, host_policy: HostPolicy, *, body: dict[str, Any] | None = None,
                       token: str | None = None) -> dict[str, Any]:
    """GET or POST JSON under `host_policy`; any failure is one LtiError (details in the log only)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password:
        raise LtiError("lti_bad_url", 400, "bad url", what=url[:100])
    if parts.scheme == "http" and not host_policy.may_allow_http(parts.hostname):
        raise LtiError("lti_fetch_failed", 502, "plain http to a host not in FLEXI_LTI_ALLOW_HOSTS")
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        async with guarded_client(host_policy, TIMEOUT) as client:
            async with client.stream(method, url, json=body, headers=headers) as response:
                data = b""
                async for chunk in response.aiter_bytes():
                    data += chunk
                    if len(data) > MAX_BYTES:
                        raise LtiError("lti_fetch_failed", 502, "answer too large")
                if response.status_code >= 300:
                    log.warning("LTI: %s %s answered %s", method, parts.hostname, response.status_code)
                    raise LtiError("lti_fetch_failed", 502, f"status {response.status_code}")
        out = json.loads(data)
    except LtiError:
        raise
    except (EngineError, httpx.HTTPError, ValueError) as exc:  # EngineError: the guard refused the address
        log.warning("LTI: %s %s failed: %s", method, parts.hostname, type(exc).__name__)
        raise LtiError("lti_fetch_failed", 502, type(exc).__name__) from None
    if not isinstance(out, dict):
        raise LtiError("lti_fetch_failed", 502, "not a JSON object")
    return out
