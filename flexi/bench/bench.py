"""`flexi bench`: prompt-processing and generation speed, time to first token, memory and energy per model.

Runs against a Flexi (or Ollama) server through its own `/api/generate` stream and takes the token rates
from the server's final chunk (`prompt_eval_count`/`prompt_eval_duration`, `eval_count`/`eval_duration`),
so they are exact rather than counted from chunks. With `api="openai"` it measures any OpenAI-compatible
server (llama-server, vLLM, Flexi's `/v1`) through a streamed `/v1/completions`: rates come from
llama-server's `timings` when the server sends them, else from the client's clock (generation: tokens
after the first over the time from the first to the last text; prompt: prompt tokens over the time to
the first token, which includes queueing and the network, so it is a lower bound). TTFT is measured here, from sending the request to the
first non-empty text. Each request starts with a different prefix, so the runner's prefix cache cannot
make prompt processing look faster than it is. Nothing is sent anywhere but the target server.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from flexi import __version__
from flexi.bench.clients import (
    CONNECTION_ERROR,
    HTTP_ERROR,
    OK,
    STREAM_ERROR,
    TIMEOUT,
    error_text,
)
from flexi.bench.loadtest import LoadTestError, normalize_url
from flexi.bench.power import PowerMeter, open_sources
from flexi.bench.report import machine_description, mean, percentile
from flexi.bench.runner_rss import runner_memory
from flexi.i18n import t

LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}
_WORDS = ("the quick brown fox jumps over the lazy dog while a small bird sings in the old tree near "  # noqa: SIM905
          "the river and the children play in the green field").split()


@dataclass
class BenchConfig:
    url: str
    models: list[str]
    streams: list[int] = field(default_factory=lambda: [1, 4])
    prompt_tokens: int = 512
    output_tokens: int = 128
    repeat: int = 3
    timeout: float = 600.0
    api_key: str | None = None
    api: str = "ollama"  # or "openai": any OpenAI-compatible server (llama-server, vLLM, Flexi's /v1)
    ctx: int | None = None  # num_ctx per request (Ollama dialect); None: the server's default

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}


@dataclass
class Measurement:
    """One request; times in seconds, rates from the server's own counters."""

    streams: int
    repetition: int
    status: str = OK
    error: str | None = None
    ttft_s: float | None = None
    latency_s: float = 0.0
    prompt_tokens: int | None = None
    prompt_eval_s: float | None = None
    output_tokens: int | None = None
    eval_s: float | None = None
    rates: str = "server"  # "client": timed here (an OpenAI-compatible server that reports no timings)

    @property
    def pp_rate(self) -> float | None:
        return self.prompt_tokens / self.prompt_eval_s if self.prompt_tokens and self.prompt_eval_s else None

    @property
    def tg_rate(self) -> float | None:
        return self.output_tokens / self.eval_s if self.output_tokens and self.eval_s else None


def parse_streams(value: str) -> list[int]:
    """"1,4" → [1, 4]; LoadTestError for anything but positive whole numbers."""
    out: list[int] = []
    for part in value.split(","):
        try:
            n = int(part.strip())
        except ValueError:
            raise LoadTestError(t("bench_bad_streams", value=value)) from None
        if n < 1:
            raise LoadTestError(t("bench_bad_streams", value=value))
        if n not in out:
            out.append(n)
    if not out:
        raise LoadTestError(t("bench_bad_streams", value=value))
    return out


def check_config(config: BenchConfig) -> None:
    if not config.models:
        raise LoadTestError(t("bench_no_models"))
    for option, value in (("--prompt-tokens", config.prompt_tokens), ("--output-tokens", config.output_tokens),
                          ("--repeat", config.repeat)):
        if value < 1:
            raise LoadTestError(t("bad_positive", option=option, value=value))
    if not config.timeout > 0:
        raise LoadTestError(t("bad_positive", option="--timeout", value=config.timeout))
    if config.ctx is not None and config.ctx < config.prompt_tokens + config.output_tokens:
        raise LoadTestError(t("bench_ctx_too_small", ctx=config.ctx, need=config.prompt_tokens + config.output_tokens))
    if config.ctx is not None and config.api != "ollama":
        raise LoadTestError(t("bench_ctx_ollama_only"))
    if config.api not in APIS:
        raise LoadTestError(t("bad_api", value=config.api))


def build_prompt(tokens: int, tag: str) -> str:
    """About `tokens` tokens of plain words (one token each in common vocabularies) after a unique tag, which
    comes first so that no two prompts share a cached prefix."""
    words = [_WORDS[i % len(_WORDS)] for i in range(max(tokens - 8, 1))]
    return f"{tag}: " + " ".join(words)


APIS = ("ollama", "openai")


def _request(api: str, model: str, prompt: str, output_tokens: int, ctx: int | None = None) -> tuple[str, dict[str, Any]]:
    """The path and body of one streamed generation in the server's dialect."""
    if api == "openai":
        return "/v1/completions", {"model": model, "prompt": prompt, "max_tokens": output_tokens, "temperature": 0,
                                   "stream": True, "stream_options": {"include_usage": True}, "ignore_eos": True}
    options: dict[str, Any] = {"num_predict": output_tokens, "temperature": 0, "ignore_eos": True}
    if ctx is not None:
        options["num_ctx"] = ctx  # the server loads the model with this context (a reload if it differs)
    return "/api/generate", {"model": model, "prompt": prompt, "raw": True, "stream": True, "options": options}


async def measure(client: httpx.AsyncClient, config: BenchConfig, model: str, prompt: str, output_tokens: int,
                  streams: int, repetition: int) -> Measurement:
    """One streamed generation; failures are results, never exceptions."""
    m = Measurement(streams=streams, repetition=repetition)
    path, body = _request(config.api, model, prompt, output_tokens, config.ctx)
    start = time.perf_counter()
    try:
        async with asyncio.timeout(config.timeout):
            async with client.stream("POST", config.url + path, json=body, headers=config.headers()) as response:
                if response.status_code >= 400:
                    m.status, m.error = HTTP_ERROR, error_text(await response.aread()) or response.reason_phrase
                elif config.api == "openai":
                    await _read_sse(response, m, start)
                else:
                    await _read(response, m, start)
    except (TimeoutError, httpx.TimeoutException):
        m.status, m.error = TIMEOUT, f"no complete answer within {config.timeout:g} s"
    except httpx.TransportError as exc:
        m.status, m.error = CONNECTION_ERROR, f"{type(exc).__name__}: {exc}"
    except (httpx.HTTPError, ValueError) as exc:
        m.status, m.error = STREAM_ERROR, f"{type(exc).__name__}: {exc}"
    m.latency_s = time.perf_counter() - start
    return m


async def _read(response: httpx.Response, m: Measurement, start: float) -> None:
    done = False
    async for line in response.aiter_lines():
        if not line.strip():
            continue
        obj = json.loads(line)
        if not isinstance(obj, dict):
            continue
        if obj.get("error"):
            m.status, m.error = STREAM_ERROR, error_text(line.encode())
            return
        if m.ttft_s is None and (obj.get("response") or obj.get("thinking")):
            m.ttft_s = time.perf_counter() - start
        if obj.get("done"):
            done = True
            m.prompt_tokens = obj.get("prompt_eval_count")
            m.output_tokens = obj.get("eval_count")
            if isinstance(obj.get("prompt_eval_duration"), int):
                m.prompt_eval_s = obj["prompt_eval_duration"] / 1e9
            if isinstance(obj.get("eval_duration"), int):
                m.eval_s = obj["eval_duration"] / 1e9
    if not done:
        m.status, m.error = STREAM_ERROR, "the stream ended without a final chunk"


async def _read_sse(response: httpx.Response, m: Measurement, start: float) -> None:
    """An OpenAI-compatible completion stream: text chunks, then usage (and llama-server's `timings`)."""
    first = last = None
    usage: dict[str, Any] = {}
    timings: dict[str, Any] = {}
    done = False
    async for line in response.aiter_lines():
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            done = True
            break
        obj = json.loads(data)
        if not isinstance(obj, dict):
            continue
        if obj.get("error"):
            m.status, m.error = STREAM_ERROR, error_text(data.encode())
            return
        if any(isinstance(c, dict) and c.get("text") for c in obj.get("choices") or []):
            last = time.perf_counter()
            if first is None:
                first, m.ttft_s = last, last - start
        usage = obj.get("usage") or usage
        timings = obj.get("timings") or timings
    if not done:
        m.status, m.error = STREAM_ERROR, "the stream ended without [DONE]"
        return
    m.prompt_tokens, m.output_tokens = usage.get("prompt_tokens"), usage.get("completion_tokens")
    if timings.get("prompt_ms") and timings.get("predicted_ms"):  # llama-server: its own exact timings
        m.prompt_tokens = timings.get("prompt_n", m.prompt_tokens)
        m.output_tokens = timings.get("predicted_n", m.output_tokens)
        m.prompt_eval_s, m.eval_s = timings["prompt_ms"] / 1000, timings["predicted_ms"] / 1000
        return
    m.rates = "client"
    m.prompt_eval_s = m.ttft_s
    if first is not None and last is not None and last > first and m.output_tokens and m.output_tokens > 1:
        # the first token's time belongs to the prompt; the rest over the time they took, scaled to all tokens
        m.eval_s = (last - first) * m.output_tokens / (m.output_tokens - 1)


def summarize(measurements: list[Measurement], walls: list[float], energy: dict[str, Any],
              streams: int) -> dict[str, Any]:
    """One row: per-stream rates (mean over requests), aggregate generation rate, TTFT, energy per 1,000 tokens."""
    ok = [m for m in measurements if m.status == OK]
    pp = [r for r in (m.pp_rate for m in ok) if r is not None]
    tg = [r for r in (m.tg_rate for m in ok) if r is not None]
    ttft = [m.ttft_s for m in ok if m.ttft_s is not None]
    out_tokens = sum(m.output_tokens or 0 for m in ok)
    in_tokens = sum(m.prompt_tokens or 0 for m in ok)
    wall = sum(walls)
    joules = energy.get("joules") if energy.get("measured") else None
    return {
        "streams": streams, "n": len(measurements), "ok": len(ok), "errors": len(measurements) - len(ok),
        "error_kinds": sorted({f"{m.status}: {m.error}" for m in measurements if m.status != OK})[:5],
        "prompt_tokens_mean": mean([m.prompt_tokens for m in ok if m.prompt_tokens]),
        "output_tokens_mean": mean([m.output_tokens for m in ok if m.output_tokens]),
        "pp_tokens_per_s": mean(pp),
        "tg_tokens_per_s": mean(tg),
        "tg_total_tokens_per_s": out_tokens / wall if wall > 0 and out_tokens else None,
        "ttft_mean_s": mean(ttft), "ttft_p50_s": percentile(ttft, 50), "ttft_max_s": max(ttft) if ttft else None,
        "wall_s": wall, "prompt_tokens": in_tokens, "output_tokens": out_tokens,
        "rates": "client" if any(m.rates == "client" for m in ok) else "server",
        "energy": {**energy,
                   "j_per_1k_output_tokens": joules * 1000 / out_tokens if joules is not None and out_tokens else None,
                   "j_per_1k_tokens": (joules * 1000 / (in_tokens + out_tokens)
                                       if joules is not None and in_tokens + out_tokens else None)},
    }


def is_local(url: str) -> bool:
    return httpx.URL(url).host in LOOPBACK


async def _json(client: httpx.AsyncClient, config: BenchConfig, method: str, path: str,
                body: dict[str, Any] | None = None) -> dict[str, Any]:
    try:
        response = await client.request(method, config.url + path, json=body, headers=config.headers(), timeout=30)
        data = response.json() if response.status_code == 200 else {}
    except (httpx.HTTPError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


async def model_memory(client: httpx.AsyncClient, config: BenchConfig, model: str) -> dict[str, Any]:
    """The runner's measured RSS when the server is on this machine, else /api/ps `size` (the server's estimate)."""
    ps = (await _json(client, config, "GET", "/api/ps")).get("models") or []
    names = {model, model if ":" in model.rsplit("/", 1)[-1] else model + ":latest"}
    mine = next((e for e in ps if e.get("name") in names or e.get("model") in names), None)
    estimate = mine.get("size") if mine else None
    memory: dict[str, Any] = {"source": None, "bytes": None, "peak_bytes": None, "estimate_bytes": estimate}
    if is_local(config.url) and mine is not None:
        modelfile = str((await _json(client, config, "POST", "/api/show", {"model": model})).get("modelfile", ""))
        blob = next((w.rsplit("/", 1)[-1] for line in modelfile.splitlines() if line.startswith("FROM /")
                     for w in [line[5:].strip()]), None)
        if blob is not None or len(ps) == 1:
            port = httpx.URL(config.url).port or 80
            found = await asyncio.to_thread(runner_memory, port, blob)
            if found:
                memory.update(source="runner_rss", bytes=found["rss_bytes"], peak_bytes=found["peak_rss_bytes"],
                              runners=found["runners"])
                return memory
    if estimate:
        memory.update(source="api_ps_estimate", bytes=estimate)
    return memory


Progress = Callable[[str, int, int], None]  # model, streams, repetition


async def bench_model(client: httpx.AsyncClient, config: BenchConfig, model: str, local: bool,
                      on_batch: Progress | None = None) -> dict[str, Any]:
    """Warm up (load the model), then every stream count `repeat` times; memory read while still loaded."""
    warm = await measure(client, config, model, build_prompt(16, "warm-up"), 1, 0, 0)
    rows, requests = [], []
    if warm.status != OK:
        return {"model": model, "warmup_error": warm.error or warm.status, "rows": [], "requests": [asdict(warm)],
                "memory": {"source": None, "bytes": None, "peak_bytes": None, "estimate_bytes": None}}
    sources = open_sources() if local else []
    try:
        for streams in config.streams:
            meter = PowerMeter(sources)
            meter.start()
            level: list[Measurement] = []
            walls: list[float] = []
            for rep in range(config.repeat):
                if on_batch:
                    on_batch(model, streams, rep)
                started = time.perf_counter()
                level += await asyncio.gather(*(
                    measure(client, config, model, build_prompt(config.prompt_tokens, secrets.token_hex(3)),
                            config.output_tokens, streams, rep) for i in range(streams)))
                walls.append(time.perf_counter() - started)
            energy = meter.stop().to_dict()
            if not local:
                energy["reason"] = "server is not on this machine"
            rows.append(summarize(level, walls, energy, streams))
            requests += [asdict(m) for m in level]
    finally:
        for source in sources:
            source.close()
    return {"model": model, "rows": rows, "requests": requests, "memory": await model_memory(client, config, model)}


def _gpus() -> list[str]:
    try:
        import pynvml  # nvidia-ml-py
    except ImportError:
        return []
    try:
        pynvml.nvmlInit()
        try:
            names = [pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(i))
                     for i in range(pynvml.nvmlDeviceGetCount())]
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # noqa: BLE001 (no driver, no GPU)
        return []
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names]


def _llama_cpp_version() -> str | None:
    try:
        import llama_cpp
    except ImportError:
        return None
    return str(getattr(llama_cpp, "__version__", None) or "") or None


async def run_bench(config: BenchConfig, on_batch: Progress | None = None) -> dict[str, Any]:
    """The whole run as the document written to bench.json."""
    started = datetime.now(UTC).isoformat(timespec="seconds")
    local = is_local(config.url)
    async with httpx.AsyncClient(timeout=httpx.Timeout(config.timeout, connect=10)) as client:
        try:
            version = await client.get(config.url + "/api/version", headers=config.headers(), timeout=10)
        except httpx.TransportError as exc:
            raise LoadTestError(t("unreachable", url=config.url, detail=str(exc) or type(exc).__name__)) from None
        try:
            info = version.json() if version.status_code == 200 else {}
        except ValueError:
            info = {}
        info = info if isinstance(info, dict) else {}
        results = [await bench_model(client, config, model, local, on_batch) for model in config.models]
    machine = machine_description()
    machine["gpus"] = _gpus()
    return {
        "tool": "flexi bench",
        "started_at": started, "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "target": {"url": config.url, "local": local},
        "versions": {"flexi_client": __version__,
                     "flexi_server": info.get("flexi_version"), "ollama_api": info.get("version"),
                     "llama_cpp_python": _llama_cpp_version() if local else None},
        "machine": machine if local else {**machine, "note": "the machine running flexi bench, not the server"},
        "parameters": {"api": config.api, "ctx": config.ctx, "models": config.models, "streams": config.streams, "prompt_tokens": config.prompt_tokens,
                       "output_tokens": config.output_tokens, "repeat": config.repeat, "timeout_s": config.timeout},
        "results": results,
    }


def target_url(value: str | None) -> str:
    return normalize_url(value, "ollama")
