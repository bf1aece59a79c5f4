"""`flexi quant-report`: one model in several quantizations — perplexity (German and English text),
file size, bits per weight and tokens/s — as a table like the teachers' talk's, with a recommendation.

Per model: size, bits per weight and the tensor-type mix from the GGUF in the local model store when
the model is there (bits per weight = tensor bytes × 8 / weights, as llama.cpp counts it), else the
size from the server's /api/tags and bits per weight estimated as file bytes × 8 / parameters;
perplexity through `flexi.bench.perplexity` (the server's logits); prompt and generation tokens/s from
one short `flexi bench` run (`flexi.bench.bench.bench_model`). Nothing is sent anywhere but --url.

The recommendation rule (`recommend`): among the quantizations whose perplexity is within
`tolerance` (default 3 %) of the best one in *every* language, the smallest file; ties go to the lower
mean perplexity. If no model is within the tolerance in both languages at once (the best German
and the best English model differ), the one whose worse language is closest to its best is named. Why: below a few per cent the quality difference is not noticeable in use, while
every byte less is memory for more concurrent users (KV cache) and speed on memory-bound hardware.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from flexi import __version__
from flexi.bench import perplexity as ppl
from flexi.bench.bench import BenchConfig, _llama_cpp_version, bench_model, is_local
from flexi.bench.report import machine_description
from flexi.i18n import text

DEFAULT_TOLERANCE = 3.0  # per cent
LANGS = ("de", "en")
MIB = 2**20


@dataclass
class QuantReportConfig:
    url: str
    models: list[str]
    ctx: int = ppl.DEFAULT_CTX
    tolerance: float = DEFAULT_TOLERANCE
    prompt_tokens: int = 128
    output_tokens: int = 32
    repeat: int = 2
    timeout: float = 600.0
    api_key: str | None = None
    texts: dict[str, str] = field(default_factory=lambda: {lang: lang for lang in LANGS})

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}


FileFacts = Callable[[str], dict[str, Any] | None]  # model name → facts from the local store, or None
Progress = Callable[[str, str], None]  # model, step


def recommend(results: list[dict[str, Any]], tolerance: float = DEFAULT_TOLERANCE) -> dict[str, Any] | None:
    """The smallest quantization within `tolerance` % of the best perplexity in every language (see the
    module doc); None when no model has perplexities for all languages and a size."""
    usable = [r for r in results if r.get("size_bytes") and all(
        isinstance((r.get("perplexity") or {}).get(lang), (int, float)) for lang in LANGS)]
    if not usable:
        return None
    best = {lang: min(r["perplexity"][lang] for r in usable) for lang in LANGS}
    limit = 1 + max(0.0, tolerance) / 100

    def excess(r: dict[str, Any]) -> float:  # how far the worse language is above its best, as a fraction
        return max(r["perplexity"][lang] / best[lang] - 1 for lang in LANGS)

    good = [r for r in usable if excess(r) <= limit - 1 + 1e-12]
    key = "quant_reason"
    if not good:  # the best German and the best English model differ by more than the tolerance
        good, key = [min(usable, key=excess)], "quant_reason_balanced"
    chosen = min(good, key=lambda r: (r["size_bytes"], sum(r["perplexity"][lang] for lang in LANGS)))
    values = {
        "model": chosen["model"], "quant": chosen.get("quant") or "?", "tol": f"{tolerance:g}",
        "size": f"{chosen['size_bytes'] / MIB:.1f}",
        "de": f"{chosen['perplexity']['de']:.2f}", "en": f"{chosen['perplexity']['en']:.2f}",
        "best_de": f"{best['de']:.2f}", "best_en": f"{best['en']:.2f}",
        "rest": ", ".join(r["model"] for r in usable if r is not chosen) or "–",
    }
    return {"model": chosen["model"], "quant": chosen.get("quant"), "tolerance_percent": tolerance,
            "best_perplexity": best,
            "reason": {loc: text(key, loc, **values) for loc in ("en", "de")}}


async def _server_facts(client: httpx.AsyncClient, config: QuantReportConfig, model: str) -> dict[str, Any]:
    """Size and quantization from /api/tags and parameters from /api/show, when the store is not local."""
    facts: dict[str, Any] = {}
    try:
        tags = (await client.get(config.url + "/api/tags", headers=config.headers(), timeout=30)).json()
        names = {model, model if ":" in model.rsplit("/", 1)[-1] else model + ":latest"}
        entry = next((m for m in tags.get("models", []) if m.get("name") in names or m.get("model") in names), None)
        if entry:
            facts["size_bytes"] = entry.get("size")
            facts["quant"] = (entry.get("details") or {}).get("quantization_level")
        show = (await client.post(config.url + "/api/show", json={"model": model}, headers=config.headers(),
                                  timeout=30)).json()
        params = (show.get("model_info") or {}).get("general.parameter_count")
        if facts.get("size_bytes") and isinstance(params, int) and params > 0:
            facts["bits_per_weight"] = facts["size_bytes"] * 8 / params
            facts["bits_per_weight_source"] = "file size / parameters"
    except (httpx.HTTPError, ValueError, AttributeError, TypeError):
        pass
    return facts


async def report_model(client: httpx.AsyncClient, config: QuantReportConfig, model: str,
                       file_facts: FileFacts | None, on_step: Progress | None = None) -> dict[str, Any]:
    """One result row: facts, perplexity per language, tokens/s; failures are recorded, not raised."""
    facts = (file_facts(model) if file_facts else None) or await _server_facts(client, config, model)
    result: dict[str, Any] = {"model": model, "quant": facts.get("quant"), "size_bytes": facts.get("size_bytes"),
                              "bits_per_weight": facts.get("bits_per_weight"),
                              "bits_per_weight_source": facts.get("bits_per_weight_source"),
                              "tensor_types": facts.get("tensor_types"), "perplexity": {},
                              "perplexity_detail": {}, "pp_tokens_per_s": None, "tg_tokens_per_s": None,
                              "errors": []}
    target = ppl.Target(url=config.url, model=model, api_key=config.api_key, timeout=config.timeout)
    for lang, spec in config.texts.items():
        if on_step:
            on_step(model, f"perplexity {lang}")
        try:
            label, body = ppl.load_text(spec)
            measured = await ppl.measure(client, target, label, body, config.ctx)
        except ppl.PerplexityError as exc:
            result["perplexity"][lang] = None
            result["errors"].append(f"perplexity {lang}: {exc}")
            continue
        result["perplexity"][lang] = measured.perplexity
        result["perplexity_detail"][lang] = measured.to_dict()
    if on_step:
        on_step(model, "speed")
    bench = BenchConfig(url=config.url, models=[model], streams=[1], prompt_tokens=config.prompt_tokens,
                        output_tokens=config.output_tokens, repeat=config.repeat, timeout=config.timeout,
                        api_key=config.api_key)
    speed = await bench_model(client, bench, model, local=False)
    if speed.get("rows"):
        row = speed["rows"][0]
        result["pp_tokens_per_s"], result["tg_tokens_per_s"] = row["pp_tokens_per_s"], row["tg_tokens_per_s"]
        result["errors"] += [f"speed: {e}" for e in row.get("error_kinds", [])]
    else:
        result["errors"].append(f"speed: {speed.get('warmup_error') or 'failed'}")
    return result


async def run_quant_report(config: QuantReportConfig, file_facts: FileFacts | None = None,
                           on_step: Progress | None = None) -> dict[str, Any]:
    """The whole run as the document written to quant.json (top-level shape of bench.json)."""
    ppl.check_ctx(config.ctx)
    started = datetime.now(UTC).isoformat(timespec="seconds")
    local = is_local(config.url)
    async with httpx.AsyncClient(timeout=httpx.Timeout(config.timeout, connect=10)) as client:
        try:
            version = await client.get(config.url + "/api/version", headers=config.headers(), timeout=10)
            info = version.json() if version.status_code == 200 else {}
        except httpx.TransportError as exc:
            raise ppl.PerplexityError(text("unreachable", "en", url=config.url,
                                           detail=str(exc) or type(exc).__name__)) from None
        except ValueError:
            info = {}
        info = info if isinstance(info, dict) else {}
        results = [await report_model(client, config, model, file_facts, on_step) for model in config.models]
    machine = machine_description()
    return {
        "tool": "flexi quant-report",
        "started_at": started, "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "target": {"url": config.url, "local": local},
        "versions": {"flexi_client": __version__, "flexi_server": info.get("flexi_version"),
                     "ollama_api": info.get("version"),
                     "llama_cpp_python": _llama_cpp_version() if local else None},
        "machine": machine if local else {**machine, "note": "the machine running flexi quant-report, not the server"},
        "parameters": {"models": config.models, "ctx": config.ctx, "tolerance_percent": config.tolerance,
                       "texts": config.texts, "prompt_tokens": config.prompt_tokens,
                       "output_tokens": config.output_tokens, "repeat": config.repeat, "timeout_s": config.timeout},
        "results": results,
        "recommendation": recommend(results, config.tolerance),
    }


# --- rendering ----------------------------------------------------------------------------------
def _num(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def table(doc: dict[str, Any], locale: str = "en") -> tuple[list[str], list[list[str]]]:
    """The talk's layout: one column per quantization, one row per measure (headers, rows)."""
    results = doc["results"]
    headers = [text("quant_col_measure", locale)] + [r.get("quant") or r["model"] for r in results]

    def row(key: str, cell: Callable[[dict[str, Any]], str]) -> list[str]:
        return [text(key, locale)] + [cell(r) for r in results]

    rows = [
        row("quant_row_model", lambda r: r["model"]),
        row("quant_row_ppl_de", lambda r: _num((r["perplexity"] or {}).get("de"))),
        row("quant_row_ppl_en", lambda r: _num((r["perplexity"] or {}).get("en"))),
        row("quant_row_size", lambda r: _num(r["size_bytes"] / MIB if r.get("size_bytes") else None, 1)),
        row("quant_row_bpw", lambda r: _num(r.get("bits_per_weight"))),
        row("quant_row_ms_token", lambda r: _num(1000 / r["tg_tokens_per_s"] if r.get("tg_tokens_per_s") else None, 1)),
        row("quant_row_tg", lambda r: _num(r.get("tg_tokens_per_s"), 1)),
        row("quant_row_pp", lambda r: _num(r.get("pp_tokens_per_s"), 1)),
    ]
    return headers, rows


def _md_cell(value: str) -> str:
    return value.replace("\\", "\\\\").replace("|", "\\|")


def markdown(doc: dict[str, Any], notes: list[str] | None = None) -> str:
    """quant.md (English, like bench.md, so runs from different machines compare)."""
    params = doc["parameters"]
    headers, rows = table(doc, "en")
    lines = [
        "# Flexi quantization report",
        "",
        f"Target `{doc['target']['url']}`; started {doc['started_at']}, finished {doc['finished_at']}.  ",
        (f"Perplexity over the texts ({', '.join(f'{k}: {v}' for k, v in params['texts'].items())}) "
         f"in windows of {params['ctx']} tokens, computed from the server's own logits (`/v1/completions`, "
         "echo + logprobs).  "),
        (f"Speed: one stream, prompt ≈ {params['prompt_tokens']} tokens, {params['output_tokens']} output tokens, "
         f"{params['repeat']} repetition(s) (`flexi bench`).  "),
        (f"Machine: {doc['machine'].get('cpu_model')}, {doc['machine'].get('cpu_cores')} cores, "
         f"{doc['machine'].get('ram_gib')} GiB RAM.  "),
        (f"Versions: Flexi server {doc['versions'].get('flexi_server') or 'unknown'}, llama.cpp (llama-cpp-python) "
         f"{doc['versions'].get('llama_cpp_python') or 'unknown'}."),
        "",
        "| " + " | ".join(_md_cell(h) for h in headers) + " |",
        "|---|" + "---:|" * (len(headers) - 1),
    ]
    lines += ["| " + " | ".join(_md_cell(c) for c in r) + " |" for r in rows]
    rec = doc.get("recommendation")
    lines += ["", "## Recommendation / Empfehlung", ""]
    if rec:
        lines += [rec["reason"]["en"], "", rec["reason"]["de"]]
    else:
        lines.append("No recommendation: no quantization has a size and perplexities in both languages.")
    mixes = [(r.get("quant") or r["model"], r["tensor_types"]) for r in doc["results"] if r.get("tensor_types")]
    if mixes:
        lines += ["", "## What the files contain", "",
                  ("Tensor types per file, read from the GGUF (the name is what was asked for; llama.cpp falls back "
                   "to another type for tensors whose rows do not fit the type's block size):"), ""]
        lines += [f"- {name}: " + ", ".join(f"{k} × {v}" for k, v in mix.items()) for name, mix in mixes]
    errors = [(r["model"], e) for r in doc["results"] for e in r.get("errors", [])]
    if errors:
        lines += ["", "## Errors", ""] + [f"- {m}: {e}" for m, e in errors]
    lines += ["", "## How to read it", "",
              ("Perplexity = exp(−mean log-probability of each token given the tokens before it); lower is better. "
               "Windows of the given size advance by half a window; every token is scored once, and after the first "
               "window with at least half a window of context. Bits per weight = tensor bytes × 8 / weights (from "
               "the GGUF when the model is in the local store, else file size × 8 / parameters). ms/token = "
               "1000 / generation tokens/s of one stream.")]
    if notes:
        lines += ["", "## Notes", ""]
        for note in notes:
            lines += [note, ""]
        lines.pop()
    lines.append("")
    return "\n".join(lines)
