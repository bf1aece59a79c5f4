"""Model policy: who may use which model, and with which per-request limits.

A rule (`model_policies` row) names a model glob (`llama3*:*`), the roles and
groups it admits (None = no restriction from that field; both set = either
admits) and optional caps on context and output tokens. The most specific
matching rule (longest pattern without wildcards counted) decides. Every
role also has default caps (FLEXI_ROLE_MAX_CONTEXT / FLEXI_ROLE_MAX_OUTPUT,
issue 11) that apply on a fresh install and that a rule can only narrow. Models no
rule names follow FLEXI_MODEL_ACCESS (open: every signed-in user; closed:
admins only). Admins may use every model. A key's own model list narrows
further. A forbidden model answers exactly like an unknown one (404), so
students cannot enumerate models they may not use.
"""

from __future__ import annotations

import fnmatch
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import Engine, select

from flexi.access.principal import Principal
from flexi.db.models import ModelPolicy

RULES_TTL = 5.0


@dataclass(frozen=True)
class Rule:
    pattern: str
    roles: frozenset[str] | None
    groups: frozenset[str] | None
    max_context: int | None
    max_output: int | None

    @property
    def specificity(self) -> tuple[int, int]:
        return (len(self.pattern.replace("*", "").replace("?", "")), -self.pattern.count("*"))

    def admits(self, principal: Principal) -> bool:
        if self.roles is None and self.groups is None:
            return True
        return bool((self.roles is not None and principal.role in self.roles)
                    or (self.groups is not None and principal.groups & self.groups))


@dataclass(frozen=True)
class Limits:
    max_context: int | None = None
    max_output: int | None = None


def _narrowest(*caps: int | None) -> int | None:
    present = [c for c in caps if c is not None]
    return min(present) if present else None


def _matches(pattern: str, name: str) -> bool:
    if fnmatch.fnmatchcase(name, pattern):
        return True
    # "llama3" names every tag of llama3, as `ollama run llama3` means llama3:latest
    return ":" not in pattern and name.split(":", 1)[0] == pattern


class PolicyBook:
    def __init__(self, engine: Engine, model_access: str = "open", role_max_context: Mapping[str, int] | None = None,
                 role_max_output: Mapping[str, int] | None = None) -> None:
        self.engine = engine
        self.open_by_default = model_access == "open"
        self.role_max_context = dict(role_max_context or {})
        self.role_max_output = dict(role_max_output or {})
        self._rules: list[Rule] = []
        self._loaded = -1e9
        self._lock = threading.Lock()

    def rules(self) -> list[Rule]:
        if time.monotonic() - self._loaded >= RULES_TTL:
            with self._lock, self.engine.connect() as conn:
                rows = conn.execute(select(ModelPolicy.pattern, ModelPolicy.allowed_roles, ModelPolicy.allowed_groups,
                                           ModelPolicy.max_context, ModelPolicy.max_output)).all()
                self._rules = sorted(
                    (Rule(p, None if r is None else frozenset(r), None if g is None else frozenset(g), c, o)
                     for p, r, g, c, o in rows),
                    key=lambda rule: rule.specificity, reverse=True)
                self._loaded = time.monotonic()
        return self._rules

    def invalidate(self) -> None:
        self._loaded = -1e9

    def decide(self, principal: Principal, model: str) -> Limits | None:
        """The limits for `principal` on `model`, or None if the model is not theirs to use."""
        if principal.key_models is not None and not any(_matches(p, model) for p in principal.key_models):
            return None
        rule = next((r for r in self.rules() if _matches(r.pattern, model)), None)
        if principal.role == "admin" or principal.local:
            return self._with_role_caps(principal, rule)
        if rule is None:
            return self._with_role_caps(principal, None) if self.open_by_default else None
        return self._with_role_caps(principal, rule) if rule.admits(principal) else None

    def _with_role_caps(self, principal: Principal, rule: Rule | None) -> Limits:
        """The rule's caps narrowed by the role's defaults (auth=off: the machine's owner, no role caps)."""
        role_ctx = None if principal.local else self.role_max_context.get(principal.role)
        role_out = None if principal.local else self.role_max_output.get(principal.role)
        return Limits(_narrowest(rule.max_context if rule else None, role_ctx),
                      _narrowest(rule.max_output if rule else None, role_out))


def allowed_context(principal: Principal, requested: int | None, limits: Limits, ceiling: int) -> int | None:
    """The num_ctx a request may ask for: at most the caller's cap, and for everyone but admins (and
    auth=off) at most `ceiling`, the context the model is loaded with or configured for. Asking for more
    is clamped silently, like Ollama clamps num_ctx: a larger context means reloading the model (and
    evicting others) for everyone, which is an admin's decision. None = the server's default."""
    if requested is None:
        return None
    cap = limits.max_context if principal.is_admin or principal.local else _narrowest(limits.max_context, ceiling)
    return requested if cap is None else min(requested, cap)
