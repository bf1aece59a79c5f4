"""Checks before a `flexi eval` run: arguments, the optional lm-eval extra, task names (no server)."""

from __future__ import annotations

import pytest

from flexi.eval import run
from flexi.eval.errors import EvalError
from flexi.eval.run import EvalConfig, check_config


@pytest.mark.parametrize(("changes", "message"), [
    ({"models": []}, "name at least one model"),
    ({"tasks": []}, "--tasks names no task"),
    ({"limit": 0}, "--limit must be greater than 0"),
    ({"max_tokens": -1}, "--max-tokens must be greater than 0"),
    ({"concurrent": 0}, "--concurrent must be greater than 0"),
    ({"speed_tokens": -1}, "--speed-tokens must not be negative"),
])
def test_bad_arguments(monkeypatch, changes, message):
    monkeypatch.setenv("LANG", "en_US.UTF-8")
    monkeypatch.delenv("LC_ALL", raising=False)
    monkeypatch.delenv("LC_MESSAGES", raising=False)
    config = EvalConfig(url="http://127.0.0.1:11434", models=["m"])
    for key, value in changes.items():
        setattr(config, key, value)
    with pytest.raises(EvalError, match=message):
        check_config(config)


def test_defaults_are_the_shipped_offline_tasks_and_no_empty_authorization():
    config = EvalConfig(url="u", models=["m"])
    check_config(config)
    assert config.tasks == ["flexi_truthfulqa_mc", "flexi_gsm8k", "flexi_mgsm_de"]
    assert "Authorization" not in config.headers()
    assert EvalConfig(url="u", models=["m"], api_key="k").headers() == {"Authorization": "Bearer k"}


def test_missing_lm_eval_names_the_extra(monkeypatch):
    monkeypatch.setenv("LANG", "de_DE.UTF-8")
    monkeypatch.delenv("LC_ALL", raising=False)
    monkeypatch.delenv("LC_MESSAGES", raising=False)
    monkeypatch.setattr(run, "find_spec", lambda name: None if name == "tenacity" else object())
    with pytest.raises(EvalError, match=r"braucht lm-evaluation-harness: pip install 'flexi\[eval\]' \(missing: tenacity\)"):
        run.lm_eval_version()


def test_unknown_shipped_looking_task_is_refused_with_the_list(monkeypatch):
    pytest.importorskip("lm_eval")
    monkeypatch.setenv("LANG", "en_US.UTF-8")
    monkeypatch.delenv("LC_ALL", raising=False)
    with pytest.raises(EvalError, match="unknown task\\(s\\): flexi_nope. Shipped \\(offline\\): flexi_truthfulqa_mc"):
        run.load_tasks(["flexi_truthfulqa_mc", "flexi_nope"])


def test_shipped_tasks_load_offline_with_kind_and_language():
    pytest.importorskip("lm_eval")
    _, infos = run.load_tasks(["flexi_truthfulqa_mc", "flexi_gsm8k", "flexi_mgsm_de"])
    assert {n: (i.kind, i.language) for n, i in infos.items()} == {
        "flexi_truthfulqa_mc": ("loglikelihood", "en"), "flexi_gsm8k": ("generate", "en"),
        "flexi_mgsm_de": ("generate", "de")}
