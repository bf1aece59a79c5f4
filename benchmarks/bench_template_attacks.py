"""Hostile prompt templates against a real server (issue 11, item 1).

Measures, on one `flexi serve`:
- the time each attack payload (sent as the `template` of `POST /api/generate`)
  takes to come back as a 400, and the server's peak-RSS growth over all of them;
- the same Jinja payloads as a *model* template (GGUF/admin templates keep
  Jinja), rendered in-process: time until the budget refuses them;
- the latency of `GET /api/tags` from another client, first on an idle server,
  then while two attackers keep the template workers busy with templates that
  run until the step budget stops them (the issue's target: < 100 ms).

    python -m benchmarks.bench_template_attacks [--seconds 10]

Writes benchmarks/results/template-attacks.{json,md}.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks.common import FlexiServer, machine, write_results

MODEL = "smollm2:135m"
BIG = "'x'*999999"
ATTACKS = {
    "jinja: nested for over 'x'*999999": f"{{% for a in {BIG} %}}{{% for b in {BIG} %}}{{% endfor %}}{{% endfor %}}",
    "jinja: 999**999**999": "{{ 999**999**999 }}",
    "jinja: 'x'.ljust(10**9)": "{{ 'x'.ljust(1000000000) }}",
    "jinja: '%0Nd' % 1": "{{ '%01000000000d' % 1 }}",
    "jinja: '{:0N}'.format(1)": "{{ '{:01000000000}'.format(1) }}",
    "go: printf \"%01000000000d\" 1": '{{ printf "%01000000000d" 1 }}',
    "go: print doubling in a range": '{{ $x := "ab" }}{{ range 60 }}{{ $x = print $x $x }}{{ end }}',
    "go: nested empty ranges (10^12)": "{{ range 1000000 }}{{ range 1000000 }}{{ end }}{{ end }}",
}
SLOW_ATTACK = ATTACKS["go: nested empty ranges (10^12)"]


def _generate(client: httpx.Client, template: str) -> tuple[int, float, str]:
    start = time.perf_counter()
    r = client.post("/api/generate", json={"model": MODEL, "prompt": "hi", "template": template, "stream": False,
                                           "options": {"num_predict": 1}})
    return r.status_code, time.perf_counter() - start, r.json().get("error", "")


def _hwm_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def _model_template_times() -> dict[str, Any]:
    """Jinja payloads as model templates: request templates are Go-only, model templates are budgeted."""
    from flexi.prompt.templates import TemplateError, render_chat

    out: dict[str, Any] = {}
    for name, template in ATTACKS.items():
        if not name.startswith("jinja"):
            continue
        start = time.perf_counter()
        try:
            render_chat(template, [{"role": "user", "content": "hi"}])
            reason = "rendered"
        except TemplateError as exc:
            reason = str(exc).removeprefix("the model's chat template could not be rendered: ")
        out[name] = {"ms": round((time.perf_counter() - start) * 1000, 1), "refused_because": reason}
    return out


def _tags_latencies(url: str, seconds: float) -> list[float]:
    out: list[float] = []
    with httpx.Client(base_url=url, timeout=30) as client:
        client.get("/api/tags")
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            start = time.perf_counter()
            client.get("/api/tags").raise_for_status()
            out.append(time.perf_counter() - start)
            time.sleep(0.05)
    return out


def _summary(values: list[float]) -> dict[str, float]:
    ms = sorted(v * 1000 for v in values)
    return {"n": len(ms), "median_ms": round(statistics.median(ms), 1),
            "p95_ms": round(ms[min(len(ms) - 1, int(0.95 * len(ms)))], 1), "max_ms": round(ms[-1], 1)}


def run(seconds: float) -> dict[str, Any]:
    with FlexiServer(port=11497) as server:
        assert server.proc is not None
        pid = server.proc.pid
        payloads: dict[str, Any] = {}
        with httpx.Client(base_url=server.url, timeout=120) as client:
            _generate(client, "{{ .Prompt }}")  # warm-up: worker threads, imports
            hwm_before = _hwm_kb(pid)
            for name, template in ATTACKS.items():
                times = []
                for _ in range(3):
                    status, took, error = _generate(client, template)
                    times.append(took)
                payloads[name] = {"status": status, "median_ms": round(statistics.median(times) * 1000, 1),
                                  "max_ms": round(max(times) * 1000, 1), "error": error}
            hwm_growth_mb = round((_hwm_kb(pid) - hwm_before) / 1024, 1)

        idle = _tags_latencies(server.url, seconds / 2)
        stop = threading.Event()
        answered: list[int] = []

        def attacker() -> None:
            with httpx.Client(base_url=server.url, timeout=120) as c:
                while not stop.is_set():
                    answered.append(_generate(c, SLOW_ATTACK)[0])

        threads = [threading.Thread(target=attacker, daemon=True) for _ in range(2)]
        for t in threads:
            t.start()
        time.sleep(0.5)
        busy = _tags_latencies(server.url, seconds)
        stop.set()
        for t in threads:
            t.join(120)
    return {"machine": machine(), "payloads": payloads, "model_templates": _model_template_times(), "peak_rss_growth_mb": hwm_growth_mb,
            "tags_idle": _summary(idle), "tags_during_attack": _summary(busy),
            "attacks_during_tags": {"count": len(answered), "statuses": sorted(set(answered))}}


def markdown(data: dict[str, Any]) -> str:
    m = data["machine"]
    lines = [
        "# Hostile prompt templates (issue 11, item 1)",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, Python {m['python']}; {m['date']}.",
        "Shared machine: other processes were running; figures are upper bounds.",
        "",
        "| payload (request `template`) | status | median to answer | max |",
        "|---|---|---|---|",
    ]
    for name, p in data["payloads"].items():
        lines.append(f"| `{name}` | {p['status']} | {p['median_ms']} ms | {p['max_ms']} ms |")
    lines += ["", "Request templates are Go-only (like Ollama), so the Jinja payloads above are refused before any",
              "rendering. The same payloads as a model's (Jinja) template, rendered in-process under the budget:", "",
              "| payload (model template) | time to refusal | reason |", "|---|---|---|"]
    for name, p in data["model_templates"].items():
        lines.append(f"| `{name}` | {p['ms']} ms | {p['refused_because']} |")
    idle, busy = data["tags_idle"], data["tags_during_attack"]
    lines += [
        "",
        f"Server peak RSS growth over all payloads (3 each): {data['peak_rss_growth_mb']} MB.",
        "",
        "| `GET /api/tags` from another client | n | median | p95 | max |",
        "|---|---|---|---|---|",
        f"| idle server | {idle['n']} | {idle['median_ms']} ms | {idle['p95_ms']} ms | {idle['max_ms']} ms |",
        f"| 2 attackers, step-budget templates | {busy['n']} | {busy['median_ms']} ms | {busy['p95_ms']} ms "
        f"| {busy['max_ms']} ms |",
        "",
        f"Attack requests answered meanwhile: {data['attacks_during_tags']['count']} "
        f"(statuses {data['attacks_during_tags']['statuses']}). Target from the issue: < 100 ms.",
        "",
        "Reproduce: `python -m benchmarks.bench_template_attacks`",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10.0, help="how long /api/tags is measured under attack")
    args = parser.parse_args()
    data = run(args.seconds)
    write_results("template-attacks", data, markdown(data))


if __name__ == "__main__":
    main()
