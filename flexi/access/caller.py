"""Who is asking, resolved once per request by the access middleware.

A `Caller` carries everything later steps need to know about the request's
origin - the principal, the language for messages, the fair-queue identity and
priority, the course named for billing, the endpoint and a request id - so that
routers, the generation service and the access gate never read HTTP headers or
`request.state` themselves. It is immutable: a route that bills differently (a
course assistant bills its course) derives a new caller with `with_billing`.
The only mutable part is `timings`, which the gate fills and the middleware
reports (Server-Timing).
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field

from flexi.access.principal import Principal, splits_end_users

PRIORITIES = {"interactive": 0, "batch": 1}


@dataclass(frozen=True)
class Billing:
    """Whom a request is billed to when the route decides it instead of the key's course or
    X-Flexi-Course: a course assistant's chat bills the assistant's course (the route has already
    checked that the caller may use it) and marks the usage record with `assistant_id`; a prompt
    template's run bills the template's course and marks `template_id` and `template_version`. `endpoint`
    replaces the request path in the usage record."""

    course_id: int | None
    assistant_id: int | None = None
    endpoint: str | None = None
    template_id: int | None = None  # a run of a prompt template (issue 15): which one and which version ran
    template_version: int | None = None


@dataclass
class RequestTimings:
    """What access control (and retrieval) cost this request, in milliseconds (sent as W3C Server-Timing)."""

    auth_ms: float = 0.0
    gate_ms: float | None = None
    retrieve_ms: float | None = None  # a course assistant's search in its documents (query embedding included)

    def add_gate(self, ms: float) -> None:
        self.gate_ms = (self.gate_ms or 0.0) + ms


@dataclass(frozen=True)
class Caller:
    """The resolved caller of one request (see the module docstring)."""

    principal: Principal
    locale: str  # "de" or "en": Accept-Language first, else the principal's stored locale
    identity: str  # whose turn it is in the fair queue (without an application's end-user suffix)
    endpoint: str  # the request path (the usage record's endpoint unless billing names one)
    request_id: str = ""
    course: str | None = None  # a course named by the client (X-Flexi-Course), not yet checked
    billing: Billing | None = None
    priority_header: int | None = None  # X-Flexi-Priority, when the client sent a known value
    end_user: str | None = None  # pseudonym of a service key's end user (AccessGate.for_end_user), never the raw id
    timings: RequestTimings = field(default_factory=RequestTimings, compare=False)

    def with_billing(self, billing: Billing) -> Caller:
        return dataclasses.replace(self, billing=billing)

    def identity_for(self, end_user: str | None) -> str:
        """The fair-queue identity, subdivided by an application's own end-user id (OpenAI's `user`)
        so a Moodle server relaying many students is not one user. With authentication on, only a
        `service` account's API key may split its turn this way (a student must not multiply their share),
        the same rule as per-end-user quotas (`splits_end_users`): the queue never splits what the budget
        does not. With auth=off (no users) every client may."""
        if not end_user:
            return self.identity
        if self.principal.user_id is not None and not splits_end_users(self.principal):
            return self.identity
        return self.identity + "/user:" + hashlib.sha256(end_user.encode()).hexdigest()[:16]

    def priority_for(self, body_priority: int | None = None) -> int:
        """0 = interactive (default), 1 = batch: `X-Flexi-Priority` first, then a numeric body field
        (vLLM's `priority`), else by role (the `service` role is batch: scripts yield to people)."""
        if self.priority_header is not None:
            return self.priority_header
        if body_priority is not None:
            return 0 if body_priority <= 0 else 1
        return 1 if self.principal.role == "service" else 0


def fairness_identity(principal: Principal, bearer_token: str | None, address: str) -> str:
    """With authentication on, a client is its user (every key and session of one person share one
    turn). With auth=off, a client is the bearer token it sends (hashed, never stored) or else its
    address."""
    if principal.user_id is not None:
        return f"user:{principal.user_id}"
    if bearer_token:
        return "key:" + hashlib.sha256(bearer_token.encode()).hexdigest()[:16]
    return "addr:" + address


def priority_header_value(value: str | None) -> int | None:
    return PRIORITIES.get((value or "").strip().lower())
