"""The load test of the FLEXI paper (Appendix A), against any Ollama- or OpenAI-compatible server.

For every prompt, every concurrency level and every repetition, `level` streaming
requests of the same prompt are released at once through a fresh barrier and
measured (`clients.stream_chat`). The order is prompt → level → repetition, one
batch at a time, so batches never overlap. `run_loadtest` returns plain data;
`document` turns it into what results.json holds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import httpx

from flexi import __version__
from flexi.bench import report
from flexi.bench.clients import (
    APIS,
    Api,
    GenerationParams,
    RequestRecord,
    endpoint,
    probe_path,
    stream_chat,
)
from flexi.i18n import t
from flexi.bench.prompts import PAPER_PROMPTS

DEFAULT_MODEL = "smollm2:135m"
DEFAULT_LEVELS: tuple[int, ...] = (1, 10, 30)
DEFAULT_TIMEOUT = 300.0
PROBE_TIMEOUT = 10.0


class LoadTestError(Exception):
    """Bad arguments or an unreachable target: the run cannot start. `str()` is user-facing."""


@dataclass
class LoadTestConfig:
    url: str
    api: Api = "ollama"
    model: str = DEFAULT_MODEL
    prompts: list[str] = field(default_factory=lambda: list(PAPER_PROMPTS))
    levels: list[int] = field(default_factory=lambda: list(DEFAULT_LEVELS))
    repetitions: int = 1
    max_tokens: int | None = None
    temperature: float | None = None
    ignore_eos: bool = False
    timeout: float = DEFAULT_TIMEOUT
    api_key: str | None = None
    warmup: bool = True

    @property
    def total_requests(self) -> int:
        return len(self.prompts) * self.repetitions * sum(self.levels)

    @property
    def generation(self) -> GenerationParams:
        return GenerationParams(api=self.api, model=self.model, max_tokens=self.max_tokens,
                                temperature=self.temperature, ignore_eos=self.ignore_eos)

    def headers(self) -> dict[str, str]:
        headers = {"User-Agent": f"flexi-loadtest/{__version__}"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    def parameters(self) -> dict[str, Any]:
        """The run's parameters for results.json (the API key itself is never written)."""
        return {"api": self.api, "model": self.model, "levels": list(self.levels),
                "repetitions": self.repetitions, "max_tokens": self.max_tokens,
                "temperature": self.temperature, "ignore_eos": self.ignore_eos,
                "timeout_s": self.timeout, "api_key_set": bool(self.api_key), "warmup": self.warmup,
                "prompt_count": len(self.prompts), "total_requests": self.total_requests}


# --- argument checking -----------------------------------------------------------------------


def parse_levels(value: str) -> list[int]:
    """"1,10,30" → [1, 10, 30]; duplicates dropped, order kept; LoadTestError when invalid."""
    levels: list[int] = []
    for part in value.replace(" ", "").split(","):
        try:
            level = int(part)
        except ValueError:
            raise LoadTestError(t("bad_levels", value=value)) from None
        if level < 1:
            raise LoadTestError(t("bad_levels", value=value))
        if level not in levels:
            levels.append(level)
    return levels


def normalize_url(value: str | None, api: str) -> str:
    """The target's base URL: --url as given (http:// added if no scheme), else FLEXI_HOST.

    A trailing "/v1" (openai) or "/api" (ollama) is dropped, since the endpoint path is added.
    """
    if value is None or not value.strip():
        from flexi.config import server_url

        try:
            return server_url()
        except ValueError as exc:
            raise LoadTestError(t("bad_url", value=exc)) from None
    raw = value.strip()
    if "://" not in raw:
        raw = "http://" + raw
    raw = raw.rstrip("/")
    suffix = "/v1" if api == "openai" else "/api"
    raw = raw.removesuffix(suffix)
    try:
        url = httpx.URL(raw)
    except (httpx.InvalidURL, ValueError):
        raise LoadTestError(t("bad_url", value=value)) from None
    if url.scheme not in ("http", "https") or not url.host:
        raise LoadTestError(t("bad_url", value=value))
    return raw


def check_config(config: LoadTestConfig) -> None:
    """LoadTestError for values no run can use."""
    if config.api not in APIS:
        raise LoadTestError(t("bad_api", value=config.api))
    if not config.levels or any(lv < 1 for lv in config.levels):
        raise LoadTestError(t("bad_levels", value=",".join(map(str, config.levels))))
    if config.repetitions < 1:
        raise LoadTestError(t("bad_positive", option="--repetitions", value=config.repetitions))
    if not config.timeout > 0:
        raise LoadTestError(t("bad_positive", option="--timeout", value=config.timeout))
    if config.max_tokens is not None and config.max_tokens < 1:
        raise LoadTestError(t("bad_positive", option="--max-tokens", value=config.max_tokens))
    if config.temperature is not None and config.temperature < 0:
        raise LoadTestError(t("bad_non_negative", option="--temperature", value=config.temperature))


# --- the run ---------------------------------------------------------------------------------


@dataclass
class BatchInfo:
    prompt_index: int
    level: int
    repetition: int


@dataclass
class LoadTestResult:
    config: LoadTestConfig
    base_url: str
    started_at: str
    finished_at: str = ""
    server: dict[str, Any] = field(default_factory=dict)
    warmup: RequestRecord | None = None
    records: list[RequestRecord] = field(default_factory=list)
    batches: list[dict[str, Any]] = field(default_factory=list)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


async def probe(client: httpx.AsyncClient, config: LoadTestConfig) -> dict[str, Any]:
    """Check that something answers HTTP at the target (any status will do); LoadTestError if not."""
    url = config.url.rstrip("/") + probe_path(config.api)
    try:
        response = await client.get(url, headers=config.headers(), timeout=min(config.timeout, PROBE_TIMEOUT))
    except httpx.TransportError as exc:
        detail = str(exc) or type(exc).__name__
        raise LoadTestError(t("unreachable", url=config.url, detail=detail)) from None
    info: dict[str, Any] = {"probe": probe_path(config.api), "probe_status": response.status_code}
    if response.status_code == 200 and config.api == "ollama":
        try:
            version = response.json().get("version")
        except (ValueError, AttributeError):
            version = None
        if isinstance(version, str):
            info["version"] = version
    return info


async def probe_target(config: LoadTestConfig) -> dict[str, Any]:
    """`probe` with a client of its own, for checking the target before anything else happens."""
    async with httpx.AsyncClient() as client:
        return await probe(client, config)


async def run_batch(client: httpx.AsyncClient, config: LoadTestConfig, batch: BatchInfo, run_start: float,
                    on_request: Callable[[RequestRecord], None] | None = None,
                    ) -> tuple[list[RequestRecord], dict[str, Any]]:
    """`batch.level` concurrent requests of one prompt, released together by a fresh barrier."""
    barrier = asyncio.Barrier(batch.level)
    prompt = config.prompts[batch.prompt_index]
    params, headers = config.generation, config.headers()

    async def one(slot: int) -> RequestRecord:
        await barrier.wait()
        started = time.perf_counter()
        record = await stream_chat(client, config.url, params, prompt, config.timeout, headers)
        record.started_s = started - run_start
        record.prompt_index, record.level = batch.prompt_index, batch.level
        record.repetition, record.slot = batch.repetition, slot
        if on_request is not None:
            on_request(record)
        return record

    records = list(await asyncio.gather(*(one(slot) for slot in range(batch.level))))
    first = min(r.started_s for r in records)
    last = max(r.started_s + r.latency_s for r in records)
    info = {"prompt_index": batch.prompt_index, "level": batch.level, "repetition": batch.repetition,
            "started_s": first, "wall_s": last - first,
            "output_tokens": sum(r.output_tokens for r in records)}
    return records, info


async def run_loadtest(config: LoadTestConfig,
                       on_request: Callable[[RequestRecord], None] | None = None,
                       on_batch: Callable[[BatchInfo], None] | None = None,
                       on_warmup: Callable[[RequestRecord | None], None] | None = None,
                       server: dict[str, Any] | None = None,
                       transport: httpx.AsyncBaseTransport | None = None) -> LoadTestResult:
    """Probe the target (unless `server`, an earlier probe's answer, is given), optionally
    warm the model up, then run every batch.

    Raises LoadTestError only before the first measured request (bad config,
    unreachable target); afterwards every failure is a record. `transport` replaces
    the network (tests).
    """
    check_config(config)
    result = LoadTestResult(config=config, base_url=config.url, started_at=_now())
    size = max(config.levels) + 1
    limits = httpx.Limits(max_connections=size, max_keepalive_connections=size)
    async with httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(config.timeout), transport=transport) as client:
        result.server = server if server is not None else await probe(client, config)
        if config.warmup:
            if on_warmup is not None:
                on_warmup(None)
            warm = replace(config, max_tokens=1)
            result.warmup = await stream_chat(client, config.url, warm.generation, config.prompts[0],
                                              config.timeout, config.headers())
            if on_warmup is not None:
                on_warmup(result.warmup)
        run_start = time.perf_counter()
        for pi in range(len(config.prompts)):
            for level in config.levels:
                for rep in range(config.repetitions):
                    batch = BatchInfo(prompt_index=pi, level=level, repetition=rep)
                    if on_batch is not None:
                        on_batch(batch)
                    records, info = await run_batch(client, config, batch, run_start, on_request)
                    result.records.extend(records)
                    result.batches.append(info)
    result.finished_at = _now()
    return result


def document(result: LoadTestResult, machine: dict[str, Any] | None = None) -> dict[str, Any]:
    """Everything results.json holds: parameters, target, machine, summary, raw records."""
    config = result.config
    requests = [r.to_dict() for r in result.records]
    return {
        "tool": "flexi loadtest",
        "flexi_version": __version__,
        "reference": "FLEXI paper, Appendix A (Server Load Results)",
        "started_at": result.started_at,
        "finished_at": result.finished_at,
        "target": {"url": result.base_url, "api": config.api, "endpoint": endpoint(config.api),
                   "server": result.server},
        "parameters": config.parameters(),
        "machine": machine if machine is not None else report.machine_description(),
        "prompts": list(config.prompts),
        "summary": report.summarize(requests, result.batches, config.prompts, config.levels),
        "warmup": result.warmup.to_dict() if result.warmup is not None else None,
        "batches": result.batches,
        "requests": requests,
    }


def failed_count(records: Sequence[RequestRecord]) -> int:
    return sum(1 for r in records if not r.ok)
