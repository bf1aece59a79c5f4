"""One `flexi eval` run: check server, models and tasks, score every model on every task, measure its speed.

lm-eval runs as a library (`simple_evaluate`), one task at a time so each gets the right backend: tasks
scored by log-likelihood go to /v1/completions (`FlexiCompletions`), generative ones to
/v1/chat/completions. A task that fails (e.g. a server without prompt log-probabilities) is recorded as an
error of that model and task; the other tasks still run. Speed is one short single-stream generation through
flexi bench's own measurement, after the tasks (the model is loaded by then). Nothing is sent anywhere but
the target server.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from importlib.util import find_spec
from typing import Any

import httpx

from flexi import __version__
from flexi.bench.bench import (
    BenchConfig,
    _gpus,
    _llama_cpp_version,
    build_prompt,
    is_local,
    measure,
    target_url,
)
from flexi.bench.clients import OK
from flexi.bench.report import machine_description, mean
from flexi.eval.errors import EvalError
from flexi.eval.scores import averages, language_of, task_score
from flexi.eval.tasks import SHIPPED, TASK_DIR
from flexi.i18n import t

SPEED_PROMPT_TOKENS = 32
SPEED_REPEAT = 2


@dataclass
class EvalConfig:
    url: str
    models: list[str]
    tasks: list[str] = field(default_factory=lambda: list(SHIPPED))
    limit: int | None = None
    max_tokens: int | None = None
    concurrent: int = 1
    speed_tokens: int = 64  # output tokens of each speed measurement; 0 = no measurement
    timeout: float = 600.0
    api_key: str | None = None

    def headers(self) -> dict[str, str]:
        # never an empty dict: lm-eval would then send "Authorization: Bearer " without a key
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {"Accept": "application/json"}


@dataclass
class TaskInfo:
    name: str
    kind: str  # "loglikelihood" | "generate"
    language: str


def check_config(config: EvalConfig) -> None:
    if not config.models:
        raise EvalError(t("eval_no_models"))
    if not config.tasks:
        raise EvalError(t("eval_no_tasks"))
    for option, value in (("--limit", config.limit), ("--max-tokens", config.max_tokens),
                          ("--concurrent", config.concurrent)):
        if value is not None and value < 1:
            raise EvalError(t("bad_positive", option=option, value=value))
    if config.speed_tokens < 0:
        raise EvalError(t("bad_non_negative", option="--speed-tokens", value=config.speed_tokens))


def lm_eval_version() -> str:
    """lm-eval's version; EvalError with the install hint when it or its `api` extra is missing."""
    missing = [name for name in ("lm_eval", "aiohttp", "tenacity", "requests") if find_spec(name) is None]
    if missing:
        raise EvalError(t("eval_not_installed", detail="missing: " + ", ".join(missing)))
    return metadata.version("lm-eval")


def load_tasks(names: list[str]) -> tuple[Any, dict[str, TaskInfo]]:
    """lm-eval's TaskManager (shipped tasks first) and what each named task is; EvalError for unknown names
    or data that cannot be loaded (a standard task offline)."""
    from lm_eval.tasks import TaskManager

    foreign = [name for name in names if name.startswith("flexi_") and name not in SHIPPED]
    if foreign:  # the flexi_ prefix is ours: no need to index lm-eval's 14,000 tasks (about 10 s) to know
        raise EvalError(t("eval_unknown_task", names=", ".join(foreign), shipped=", ".join(SHIPPED)))
    only_shipped = all(name in SHIPPED for name in names)
    manager = TaskManager(include_path=str(TASK_DIR), include_defaults=not only_shipped)
    unknown = [name for name in names if name not in manager.all_tasks]
    if unknown:
        raise EvalError(t("eval_unknown_task", names=", ".join(unknown), shipped=", ".join(SHIPPED)))
    infos: dict[str, TaskInfo] = {}
    for name in names:
        try:
            loaded = manager.load([name])
        except Exception as exc:  # noqa: BLE001 (datasets raises many kinds: offline, missing files, …)
            raise EvalError(t("eval_task_load_failed", name=name, detail=f"{type(exc).__name__}: {exc}")) from None
        leaves = list((loaded.get("tasks") or {}).values())
        kinds = {task.OUTPUT_TYPE for task in leaves}
        kind = "generate" if kinds == {"generate_until"} else "loglikelihood"
        first = leaves[0] if leaves else None
        meta = getattr(getattr(first, "config", None), "metadata", None) if first is not None else None
        infos[name] = TaskInfo(name, kind, language_of(name, meta if isinstance(meta, dict) else None))
    return manager, infos


def server_info(client: httpx.Client, config: EvalConfig) -> dict[str, Any]:
    """/api/version of the target; EvalError when it cannot be reached."""
    try:
        response = client.get(config.url + "/api/version", headers=config.headers(), timeout=10)
    except httpx.TransportError as exc:
        raise EvalError(t("unreachable", url=config.url, detail=str(exc) or type(exc).__name__)) from None
    try:
        info = response.json() if response.status_code == 200 else {}
    except ValueError:
        info = {}
    return info if isinstance(info, dict) else {}


def check_models(client: httpx.Client, config: EvalConfig) -> None:
    """Every model must exist on the server (POST /api/show); EvalError listing the installed ones."""
    missing = []
    for model in config.models:
        response = client.post(config.url + "/api/show", json={"model": model}, headers=config.headers(), timeout=30)
        if response.status_code == 404:
            missing.append(model)
        elif response.status_code in (401, 403):
            raise EvalError(t("eval_forbidden", status=response.status_code))
    if missing:
        try:
            tags = client.get(config.url + "/api/tags", headers=config.headers(), timeout=30).json()
            names = sorted(m.get("name", "") for m in tags.get("models") or [])
        except (httpx.HTTPError, ValueError, AttributeError):
            names = []
        raise EvalError(t("eval_model_not_found", names=", ".join(missing), available=", ".join(names) or "–"))


async def _speed(config: EvalConfig, model: str) -> dict[str, Any]:
    if config.speed_tokens == 0:
        return {"tokens_per_s": None, "runs": 0, "errors": []}
    bench = BenchConfig(url=config.url, models=[model], timeout=config.timeout, api_key=config.api_key)
    async with httpx.AsyncClient(timeout=httpx.Timeout(config.timeout, connect=10)) as client:
        runs = [await measure(client, bench, model, build_prompt(SPEED_PROMPT_TOKENS, f"eval-speed-{i}"),
                              config.speed_tokens, 1, i) for i in range(SPEED_REPEAT)]
    rates = [m.tg_rate for m in runs if m.status == OK and m.tg_rate]
    errors = sorted({f"{m.status}: {m.error}" for m in runs if m.status != OK})
    return {"tokens_per_s": mean(rates), "runs": len(runs), "errors": errors}


def _evaluate(config: EvalConfig, manager: Any, info: TaskInfo, model: str) -> dict[str, Any]:
    """lm-eval's results dict for one model and task."""
    from lm_eval import simple_evaluate

    from flexi.eval import backend

    lm = (backend.chat_model(config.url, model, config.headers(), config.timeout, config.concurrent)
          if info.kind == "generate"
          else backend.completions_model(config.url, model, config.headers(), config.timeout, config.concurrent))
    gen_kwargs = {"max_gen_toks": config.max_tokens} if config.max_tokens else None
    results = simple_evaluate(model=lm, tasks=[info.name], limit=config.limit, task_manager=manager,
                              apply_chat_template=info.kind == "generate", log_samples=False,
                              bootstrap_iters=1000, gen_kwargs=gen_kwargs)
    return results or {}


Progress = Callable[[str, str], None]  # model, task ("" = speed)


def eval_model(config: EvalConfig, manager: Any, infos: dict[str, TaskInfo], model: str,
               on_task: Progress | None = None) -> dict[str, Any]:
    """The report's result row of one model: scores, averages, errors per task, speed."""
    scores: dict[str, dict[str, Any]] = {}
    errors: dict[str, str] = {}
    for name, info in infos.items():
        if on_task:
            on_task(model, name)
        try:
            score = task_score(_evaluate(config, manager, info, model), name)
        except EvalError as exc:
            errors[name] = str(exc)
            continue
        except Exception as exc:  # noqa: BLE001 (lm-eval and the HTTP stack raise anything; one task, not the run)
            errors[name] = f"{type(exc).__name__}: {exc}"[:500]
            continue
        if score is None:
            errors[name] = t("eval_no_score")
        else:
            score["language"] = info.language
            score["kind"] = info.kind
            scores[name] = score
    if on_task and config.speed_tokens:
        on_task(model, "")
    speed = asyncio.run(_speed(config, model))
    return {"model": model, "scores": scores, **averages(scores), "tokens_per_s": speed["tokens_per_s"],
            "speed": {"prompt_tokens": SPEED_PROMPT_TOKENS, "output_tokens": config.speed_tokens,
                      "runs": speed["runs"], "errors": speed["errors"]},
            "errors": errors}


def run_eval(config: EvalConfig, on_task: Progress | None = None) -> dict[str, Any]:
    """The whole run as the document written to eval.json (top level shaped like flexi bench's)."""
    check_config(config)
    version = lm_eval_version()
    started = datetime.now(UTC).isoformat(timespec="seconds")
    local = is_local(config.url)
    with httpx.Client(timeout=httpx.Timeout(config.timeout, connect=10)) as client:
        info = server_info(client, config)
        check_models(client, config)
    quiet = logging.getLogger("lm_eval")  # its INFO/WARNING chatter (e.g. per task "Custom kwargs can be passed")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        manager, infos = load_tasks(config.tasks)
        results = [eval_model(config, manager, infos, model, on_task) for model in config.models]
    finally:
        quiet.setLevel(level)
    machine = machine_description()
    machine["gpus"] = _gpus()
    return {
        "tool": "flexi eval",
        "started_at": started, "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "target": {"url": config.url, "local": local},
        "versions": {"flexi_client": __version__, "flexi_server": info.get("flexi_version"),
                     "ollama_api": info.get("version"), "lm_eval": version,
                     "llama_cpp_python": _llama_cpp_version() if local else None},
        "machine": machine if local else {**machine, "note": "the machine running flexi eval, not the server"},
        "parameters": {"models": config.models, "tasks": config.tasks, "limit": config.limit,
                       "max_tokens": config.max_tokens, "concurrent": config.concurrent,
                       "speed_tokens": config.speed_tokens,
                       "timeout_s": config.timeout,
                       "task_kinds": {name: i.kind for name, i in infos.items()},
                       "task_languages": {name: i.language for name, i in infos.items()}},
        "results": results,
    }


__all__ = ["EvalConfig", "EvalError", "run_eval", "target_url"]
