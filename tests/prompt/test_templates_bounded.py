"""Issue 11, item 1: nothing a template brings runs unbounded, and never on the event loop.

Two layers:
- each renderer (Jinja model templates, Go templates) against each payload, in a
  child interpreter with a memory ceiling and a kill timeout: the unfixed code
  hangs, allocates gigabytes or dies there instead of taking the test run down;
- the real server: each payload as a request `template` answers a readable 400,
  the server's memory stays flat, and `GET /api/tags` from another client is
  answered while attackers keep the template workers busy.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import MODEL, RunningServer, start_server, stop_server

ROOT = Path(__file__).resolve().parents[2]

# --------------------------------------------------------------------------- renderer level

_CHILD = r"""
import json, resource, sys, time
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))  # the unfixed code must fail here, not swap the machine
from flexi.prompt.gotemplate import render_go_template
from flexi.prompt.templates import TemplateError, render_chat
kind, payload = json.loads(sys.stdin.read())
start = time.monotonic()
try:
    if kind == "jinja":
        render_chat(payload, [{"role": "user", "content": "hi"}])
    else:
        render_go_template(payload, prompt="hi")
    outcome, message = "rendered", ""
except TemplateError as exc:
    outcome, message = "refused", str(exc)
except BaseException as exc:
    outcome, message = type(exc).__name__, str(exc)[:300]
seconds = time.monotonic() - start
# VmHWM, not ru_maxrss: Linux carries the forking parent's peak over into ru_maxrss across exec
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(json.dumps({"outcome": outcome, "message": message, "seconds": seconds, "peak_mb": hwm / 1024}))
"""


def render_isolated(kind: str, payload: str, timeout: float = 60) -> dict[str, object]:
    """Render in a fresh interpreter (1 GiB address-space cap, killed after `timeout` s)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", _CHILD], input=json.dumps([kind, payload]), capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


BIG = "'x'*999999"
JINJA_ATTACKS = {
    # the payloads
    "nested_loops_over_strings": f"{{% for a in {BIG} %}}{{% for b in {BIG} %}}{{% endfor %}}{{% endfor %}}",
    "nested_filtered_loops": f"{{% for a in {BIG} %}}{{% for b in {BIG} if false %}}{{% endfor %}}{{% endfor %}}",
    "chained_power": "{{ 999**999**999 }}",
    "power_of_power": "{{ ((9**999)**999)**999 }}",
    "integer_squaring_loop": "{% set ns = namespace(x=9**999) %}{% for i in range(40) %}"
                             "{% set ns.x = ns.x * ns.x %}{% endfor %}{{ ns.x > 0 }}",
    "ljust": "{{ 'x'.ljust(1000000000) }}",
    "rjust": "{{ 'x'.rjust(1000000000) }}",
    "center_method": "{{ 'x'.center(1000000000) }}",
    "zfill": "{{ 'x'.zfill(1000000000) }}",
    "expandtabs": "{{ '\t'.expandtabs(1000000000) }}",
    "bytes_ljust": "{{ 'x'.encode().ljust(1000000000) }}",
    "percent_width": "{{ '%01000000000d' % 1 }}",
    "percent_star_width": "{{ '%0*d' % (1000000000, 1) }}",
    "str_format_width": "{{ '{:01000000000}'.format(1) }}",
    "str_format_nested_width": "{{ '{:0{}}'.format(1, 1000000000) }}",
    "format_filter_width": "{{ '%01000000000d'|format(1) }}",
    "center_filter": "{{ 'x'|center(1000000000) }}",
    # the same idea through other doors
    "replace_method_blowup": f"{{{{ ({BIG}).replace('x', {BIG}) }}}}",
    "replace_filter_blowup": f"{{{{ ({BIG})|replace('x', {BIG}) }}}}",
    "join_method_blowup": f"{{{{ ({BIG}).join({BIG}) }}}}",
    "join_filter_blowup": f"{{{{ ({BIG})|join({BIG}) }}}}",
    "translate_blowup": f"{{{{ ({BIG}).translate({{120: {BIG}}}) }}}}",
    "to_bytes": "{{ (1).to_bytes(1000000000, 'big') }}",
    "concat_doubling": "{% set ns = namespace(s='xy') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}"
                       "{% endfor %}{{ ns.s|length }}",
    "plus_doubling": "{% set ns = namespace(s='xy') %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}"
                     "{% endfor %}{{ ns.s|length }}",
    "print_shared_references": f"{{% set l = [{BIG}]*999999 %}}{{{{ l }}}}",
    "format_shared_references": f"{{{{ ('{{0}}'*100000).format({BIG}) }}}}",
    "wordwrap_blowup": f"{{{{ ({BIG})|wordwrap(1, wrapstring={BIG}) }}}}",
    "batch_fill": "{{ [1]|batch(1000000000, 0)|list }}",
    "slice_count": "{{ [1]|slice(1000000000)|list }}",
    "sum_of_lists": "{{ ([[1]*999999]*999999)|sum(start=[]) }}",
    "lipsum": "{{ lipsum(1000000000) }}",
    "tojson_indent": "{{ messages|tojson(indent=1000000000) }}",
    "recursive_loop_fanout": "{% set l = [[]]*10 %}{% set l = [l]*10 %}{% set l = [l]*10 %}{% set l = [l]*10 %}"
                             "{% set l = [l]*10 %}{% set l = [l]*10 %}{% set l = [l]*10 %}{% set l = [l]*10 %}"
                             "{% for x in l recursive %}{{ loop(x) }}{% endfor %}",  # 10^8 items, depth 8
}

GO_ATTACKS = {
    "printf_width": '{{ printf "%01000000000d" 1 }}',
    "printf_precision": '{{ printf "%.1000000000f" 1.0 }}',
    "print_doubling": '{{ $x := "ab" }}{{ range 60 }}{{ $x = print $x $x }}{{ end }}{{ len $x }}',
    "printf_doubling": '{{ $x := "ab" }}{{ range 60 }}{{ $x = printf "%s%s" $x $x }}{{ end }}{{ len $x }}',
    "json_doubling": '{{ $x := "a\\"b" }}{{ range 60 }}{{ $x = json $x }}{{ end }}{{ len $x }}',
    "nested_empty_ranges": "{{ range 1000000 }}{{ range 1000000 }}{{ end }}{{ end }}",
}

#: Generous bounds: the fixed renderers answer in well under a second and ~100 MB;
#: the unfixed ones run for hours or ask for gigabytes.
MAX_SECONDS = 10.0
MAX_PEAK_MB = 250.0
#: A refusal must come from a limit, not from Python giving up (MemoryError, ValueError: Exceeds the limit ...).
PYTHON_FAILURE = re.compile(r"\b[A-Z]\w*(?:Error|Exception)\b")


def assert_refused_by_a_limit(result: dict[str, object], prefix: str) -> None:
    message = str(result["message"])
    assert result["outcome"] == "refused", result
    assert message.startswith(prefix), result
    assert not PYTHON_FAILURE.search(message), result
    assert float(result["seconds"]) < MAX_SECONDS, result  # type: ignore[arg-type]
    assert float(result["peak_mb"]) < MAX_PEAK_MB, result  # type: ignore[arg-type]


@pytest.mark.parametrize("payload", JINJA_ATTACKS.values(), ids=JINJA_ATTACKS.keys())
def test_model_jinja_template_attack_is_refused(payload: str) -> None:
    assert_refused_by_a_limit(render_isolated("jinja", payload), "the model's chat template could not be rendered: ")


@pytest.mark.parametrize("payload", GO_ATTACKS.values(), ids=GO_ATTACKS.keys())
def test_go_template_attack_is_refused(payload: str) -> None:
    assert_refused_by_a_limit(render_isolated("go", payload), "the prompt template could not be rendered: ")


def test_render_deadline_stops_a_slow_render() -> None:
    """Work that stays inside the step budget still stops at the wall-clock deadline."""
    from flexi.prompt import render_budget
    from flexi.prompt.templates import TemplateError, render_chat

    slow = "{% for a in range(1000) %}{% for b in range(900) %}{{ (a * b)|string|length }}{% endfor %}{% endfor %}"
    old = render_budget.render_timeout()
    render_budget.set_render_timeout(0.05)
    try:
        with pytest.raises(TemplateError, match="took longer than 0.05 s"):
            render_chat(slow, [])
    finally:
        render_budget.set_render_timeout(old)


def test_render_pool_tells_a_busy_server_from_a_slow_template(monkeypatch: pytest.MonkeyPatch) -> None:
    """The await's backstop: a render that ran too long is the template's fault (400); one that never
    got a worker is the server's (503, retry)."""
    import asyncio

    from flexi.prompt import render_budget, render_pool
    from flexi.prompt.templates import TemplateError
    from flexi.engine.types import ServerBusy

    monkeypatch.setattr(render_budget, "_timeout", 0.05)  # backstop: 0.05 * (1 + 4) + 1 = 1.25 s
    monkeypatch.setattr(render_pool, "RENDER_WORKERS", 1)
    monkeypatch.setattr(render_pool, "_executor", None)

    async def scenario() -> None:
        stuck = asyncio.ensure_future(render_pool.render_off_loop(time.sleep, 2.0))  # ignores any budget
        await asyncio.sleep(0.1)
        with pytest.raises(ServerBusy):
            await render_pool.render_off_loop(str, "never started")
        with pytest.raises(TemplateError, match="took longer"):
            await stuck

    try:
        asyncio.run(scenario())
    finally:
        if render_pool._executor is not None:
            render_pool._executor.shutdown(wait=False)


def test_request_template_takes_go_only() -> None:
    """Decision: the request's `template` is Go-only, like Ollama's; Jinja gets a 400 that says so."""
    from datetime import datetime, timezone

    from flexi.prompt.rendering import render_generate
    from flexi.engine.types import BadRequest
    from flexi.store.gguf_meta import GGUFInfo
    from flexi.store.names import parse_model_name
    from flexi.store.store import ModelRecord

    record = ModelRecord(name="m:latest", model_name=parse_model_name("m:latest"), digest="ab" * 32, size=1,
                         modified_at=datetime(2025, 1, 2, tzinfo=timezone.utc), model_path=Path("/nonexistent"),
                         info=GGUFInfo(architecture="llama", capabilities=["completion"]))
    with pytest.raises(BadRequest, match="only Ollama \\(Go\\) templates") as info:
        render_generate(record, "hi", template="{% for m in messages %}{{ m.content }}{% endfor %}")
    assert info.value.status == 400 and info.value.param == "template"
    assert render_generate(record, "hi", template="[{{ .Prompt }}]") == "[hi]"


# --------------------------------------------------------------------------- the real server

GO_ONLY = "only Ollama (Go) templates"
#: name -> (request template, what the 400 must say). Jinja ones without `{%` fail Go's parser.
REQUEST_ATTACKS = {
    "jinja_nested_loops": (JINJA_ATTACKS["nested_loops_over_strings"], GO_ONLY),
    "jinja_chained_power": ("{{ 999**999**999 }}", "unexpected"),
    "jinja_chained_power_in_a_statement": ("{% set x = 999**999**999 %}", GO_ONLY),
    "jinja_ljust": ("{{ 'x'.ljust(1000000000) }}", "not supported"),
    "jinja_percent_width": ("{{ '%01000000000d' % 1 }}", "unexpected '%'"),
    "jinja_format_width": ("{{ '{:01000000000}'.format(1) }}", "not supported"),
    "go_printf_width": (GO_ATTACKS["printf_width"], "width 1000000000 is larger than the limit"),
    "go_print_doubling": (GO_ATTACKS["print_doubling"], "print would be too large"),
    "go_nested_empty_ranges": (GO_ATTACKS["nested_empty_ranges"], "step budget exhausted"),
}


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server of its own: if templates froze it, no other test module would suffer."""
    server = start_server(tmp_path_factory.mktemp("tmpl-attacks") / "home")
    yield server
    stop_server(server)


def _attack(client: httpx.Client, template: str) -> tuple[httpx.Response, float]:
    start = time.monotonic()
    r = client.post("/api/generate", json={"model": MODEL, "prompt": "hi", "template": template, "stream": False,
                                           "options": {"num_predict": 1}})
    return r, time.monotonic() - start


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"{field} not in /proc/{pid}/status")


@pytest.mark.parametrize(("template", "needle"), REQUEST_ATTACKS.values(), ids=REQUEST_ATTACKS.keys())
def test_request_template_attack_answers_400_quickly(srv: RunningServer, template: str, needle: str) -> None:
    with httpx.Client(base_url=srv.url, timeout=60) as client:
        r, seconds = _attack(client, template)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert "template" in error and needle in error, error
    assert not PYTHON_FAILURE.search(error), error
    assert seconds < MAX_SECONDS


def test_request_template_attacks_keep_server_memory_flat(srv: RunningServer) -> None:
    pid = srv.proc.pid
    with httpx.Client(base_url=srv.url, timeout=60) as client:
        _attack(client, "{{ .Prompt }}")  # warm up: first render, worker threads started
        before = _status_kb(pid, "VmHWM")
        for template, _needle in REQUEST_ATTACKS.values():
            for _ in range(2):
                assert _attack(client, template)[0].status_code == 400
        peak_growth_mb = (_status_kb(pid, "VmHWM") - before) / 1024
    assert peak_growth_mb < 100, f"server peak RSS grew by {peak_growth_mb:.0f} MB"


def test_other_clients_are_served_while_template_attacks_run(srv: RunningServer) -> None:
    """Two attackers keep the render workers busy with step-budget-sized templates; a third client's
    `GET /api/tags` is still answered (the issue's target is 100 ms; asserted with room for a busy machine)."""
    stop = threading.Event()
    attacks: list[int] = []

    def attacker() -> None:
        with httpx.Client(base_url=srv.url, timeout=60) as client:
            while not stop.is_set():
                r, _ = _attack(client, GO_ATTACKS["nested_empty_ranges"])
                attacks.append(r.status_code)

    threads = [threading.Thread(target=attacker, daemon=True) for _ in range(2)]
    for t in threads:
        t.start()
    latencies: list[float] = []
    try:
        with httpx.Client(base_url=srv.url, timeout=30) as other:
            other.get("/api/tags")
            deadline = time.monotonic() + 6
            while time.monotonic() < deadline:
                start = time.monotonic()
                assert other.get("/api/tags").status_code == 200
                latencies.append(time.monotonic() - start)
                time.sleep(0.05)
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    assert attacks and set(attacks) == {400}, attacks
    worst = max(latencies)
    print(f"/api/tags during attack: n={len(latencies)} median={statistics.median(latencies) * 1000:.1f} ms "
          f"max={worst * 1000:.1f} ms; attacks answered: {len(attacks)}")
    assert worst < 1.0
