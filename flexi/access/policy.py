"""Model policy: who may use which model, and with which per-request limits.

A rule (`model_policies` row) names a model glob (`llama3*:*`), the roles and
groups it admits (None = no restriction from that field; both set = either
admits) and optional caps on context and output tokens. The most specific
matching rule (longest pattern without wildcards counted) decides. Models no
rule names follow FLEXI_MODEL_ACCESS (open: every signed-in user; closed:
admins only). Admins may use every model. A key's own model list narrows
further. A forbidden model answers exactly like an unknown one (404), so
students cannot enumerate models they may not use.
"""

from __future__ import annotations

import fnmatch
import threading
import time
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


def _matches(pattern: str, name: str) -> bool:
    if fnmatch.fnmatchcase(name, pattern):
        return True
    # "llama3" names every tag of llama3, as `ollama run llama3` means llama3:latest
    return ":" not in pattern and name.split(":", 1)[0] == pattern


class PolicyBook:
    def __init__(self, engine: Engine, model_access: str = "open") -> None:
        self.engine = engine
        self.open_by_default = model_access == "open"
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
            return Limits() if rule is None else Limits(rule.max_context, rule.max_output)
        if rule is None:
            return Limits() if self.open_by_default else None
        return Limits(rule.max_context, rule.max_output) if rule.admits(principal) else None
