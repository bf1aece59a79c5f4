"""What a saved reference to a model keeps (a course assistant, a prompt template, an LTI deep link):
`GenerationService.saved_name` keeps an admin alias as named, so the reference follows the alias when an admin
repoints it, and checks the caller may use what it stands for, at saving and again at every run."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from sqlalchemy import Engine

from flexi.access.admin_ops import AliasEntry
from flexi.access.caller import Caller
from flexi.access.principal import Principal
from flexi.engine.types import ModelNotFound
from flexi.service.aliases import ModelAliasTable
from flexi.service.generation import GenerationService
from tests.api.test_openai import FakeStore

OTHER = "hf.co/someorg/repo:Q4_K_M"
TEACHER = Caller(Principal(user_id=3, subject="t", pseudonym="p" * 64, role="teacher", locale="en"), "en", "user:3", "/")


def _service(db: Engine, forbidden: str = "") -> tuple[GenerationService, ModelAliasTable]:
    gate = SimpleNamespace(visible=lambda principal, name: name != forbidden)
    service = GenerationService(SimpleNamespace(), FakeStore(), gate, lambda record: None)  # type: ignore[arg-type]
    service.model_aliases = ModelAliasTable({}, db)
    service.model_aliases.apply([AliasEntry("course-model", "toolmodel", "database")])
    return service, service.model_aliases


def test_an_alias_is_kept_as_named_and_followed_after_a_repoint(db: Engine) -> None:
    service, table = _service(db)
    saved = service.saved_name(TEACHER, "Course-Model:latest")
    assert saved == "course-model"  # the alias, not its target of today
    assert service.model(TEACHER, saved).name == "toolmodel:latest"
    table.apply([AliasEntry("course-model", OTHER, "database")])  # an admin repoints it
    assert service.model(TEACHER, saved).name == OTHER  # each run resolves it anew


def test_a_real_model_is_kept_by_its_canonical_name(db: Engine) -> None:
    service, _table = _service(db)
    assert service.saved_name(TEACHER, "ToolModel") == "toolmodel:latest"


def test_visibility_is_checked_at_saving_and_at_each_run(db: Engine) -> None:
    service, table = _service(db, forbidden=OTHER)
    table.apply([AliasEntry("course-model", OTHER, "database")])
    with pytest.raises(ModelNotFound):  # an alias is no way around a policy
        service.saved_name(TEACHER, "course-model")
    with pytest.raises(ModelNotFound):
        service.saved_name(TEACHER, "no-such-model")
    table.apply([AliasEntry("course-model", "toolmodel", "database")])
    saved = service.saved_name(TEACHER, "course-model")
    table.apply([AliasEntry("course-model", OTHER, "database")])  # repointed at a model the teacher may not use
    with pytest.raises(ModelNotFound):
        service.model(TEACHER, saved)
