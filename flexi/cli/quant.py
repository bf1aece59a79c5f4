"""`flexi quantize`, `flexi perplexity` and `flexi quant-report`: which quantization of a model to serve.

`quantize` works on the local model store (like `flexi catalog` and `flexi plan`): an operator runs it on
the server machine, and a running server lists the new model at once (it reads the manifests per
request). `perplexity` and `quant-report` talk only to the server named by --url (default FLEXI_HOST).
The work lives in `flexi.store.quantize`, `flexi.bench.perplexity` and `flexi.bench.quant_report`;
texts in `flexi.i18n.quant`. Exit codes like `flexi bench`: 0 done, 1 bad arguments or failure, 130 Ctrl-C.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any, List, Optional

import typer

from flexi.cli.errors import fail
from flexi.cli.measuring import output_dir
from flexi.cli.model_reports import SAVE_OPTION, save_after_run
from flexi.cli.ui import console, print_table
from flexi.i18n import env_locale, t

MIB = 2**20


def _store() -> Any:
    from flexi.config import load_settings
    from flexi.store.store import ModelStore

    return ModelStore(load_settings().models_dir)


def quantize_command(
    source: str = typer.Argument(..., help="Installed model to quantize, e.g. smollm2:135m."),
    qtype: str = typer.Option(..., "--type", help="F16, Q8_0, Q6_K, Q5_K_M, Q5_0, Q4_K_M, Q4_0, Q3_K_M or Q2_K."),
    name: Optional[str] = typer.Option(None, "--name", help="Name of the new model (default: SOURCE-<type>, e.g. smollm2:135m-q4_k_m)."),
    threads: Optional[int] = typer.Option(None, "--threads", help="Quantizer threads (default: all cores)."),
    replace: bool = typer.Option(False, "--replace", help="Overwrite an existing model of that name."),
) -> None:
    """Make a new quantization of an installed model with llama.cpp and register it in the local model store."""
    from flexi.engine.types import EngineError
    from flexi.store.quantize import (
        QUANT_TYPES,
        default_name,
        quantize_model,
        tensor_stats,
    )
    from flexi.store.store import DEFAULT_MODEL_NAME

    quant = qtype.strip().upper()
    if quant not in QUANT_TYPES:
        raise fail(t("quant_bad_type", value=qtype, offered=", ".join(QUANT_TYPES)))
    try:
        store = _store()
        if source == DEFAULT_MODEL_NAME and not store.exists(source):
            store.ensure_default_model()  # the server registers it on first start; do the same here
        if not store.exists(source):
            raise fail(t("quant_unknown_model", name=source))
        record = store.get(source)
        target = name or default_name(record.name, quant)
        if store.exists(target) and not replace and target.lower() != record.name.lower():
            raise fail(t("quant_exists", name=target))
        err = console(stderr=True)
        err.print(t("quant_start", source=record.name, from_type=record.info.quantization_level, quant=quant,
                    name=target))
        if record.info.quantization_level not in ("F32", "F16", "BF16"):
            err.print(t("warning", message=t("quant_requantized", from_type=record.info.quantization_level)))
        created, result = quantize_model(store, source, quant, target, threads=threads, replace=replace)
    except EngineError as exc:
        raise fail(exc.message) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    if result.fallbacks:
        err.print(t("warning", message=t("quant_fallbacks", count=sum(result.fallbacks.values()),
                                         detail=", ".join(f"{k} × {v}" for k, v in result.fallbacks.items()))))
    stats = tensor_stats(created.model_path)
    typer.echo(t("quant_done", name=created.name, quant=created.info.quantization_level,
                 size=f"{created.model_path.stat().st_size / MIB:.1f}", bpw=f"{stats['bits_per_weight']:.2f}",
                 seconds=f"{result.seconds:.1f}"))


def perplexity_command(
    model: str = typer.Argument(..., help="Model served by the target server."),
    text: List[str] = typer.Option(["de", "en"], "--text", help="de, en (shipped texts) or a UTF-8 text file; repeatable."),
    ctx: int = typer.Option(512, "--ctx", help="Window size in tokens (llama-perplexity's default: 512)."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON."),
    url: Optional[str] = typer.Option(None, "--url", help="Server (default: FLEXI_HOST, else http://127.0.0.1:11434)."),
    timeout: float = typer.Option(600.0, "--timeout", help="Seconds per request."),
    api_key: Optional[str] = typer.Option(None, "--api-key", envvar="FLEXI_API_KEY", help="Sent as 'Authorization: Bearer KEY'."),
) -> None:
    """Perplexity of a served model on a German and an English text, from the server's own logits."""
    import httpx

    from flexi.bench import perplexity as ppl
    from flexi.bench.bench import target_url
    from flexi.bench.loadtest import LoadTestError

    async def run() -> list[dict[str, Any]]:
        target = ppl.Target(url=target_url(url), model=model, api_key=api_key or None, timeout=timeout)
        loaded = [ppl.load_text(spec) for spec in text]
        out = []
        async with httpx.AsyncClient(timeout=httpx.Timeout(timeout, connect=10)) as client:
            for label, body in loaded:
                result = await ppl.measure(client, target, label, body, ctx)
                out.append({"model": model, **result.to_dict()})
                if not as_json:
                    typer.echo(t("ppl_result", model=model, text=label, ppl=f"{result.perplexity:.3f}",
                                 tokens=result.scored_tokens, windows=result.windows, ctx=ctx,
                                 seconds=result.seconds))
        return out

    try:
        ppl.check_ctx(ctx)
        results = asyncio.run(run())
    except LoadTestError as exc:
        raise fail(str(exc)) from None
    except KeyboardInterrupt:
        raise fail(t("interrupted"), 130) from None
    if as_json:
        typer.echo(json.dumps(results, indent=2, ensure_ascii=False))


def _file_facts(model: str) -> dict[str, Any] | None:
    """Size, bits per weight and tensor types from the local store's GGUF; None if it is not there."""
    from flexi.store.quantize import tensor_stats

    try:
        store = _store()
        if not store.exists(model):
            return None
        record = store.get(model)
        stats = tensor_stats(record.model_path)
    except Exception:  # noqa: BLE001 - then the server's figures are used
        return None
    return {"quant": record.info.quantization_level, "size_bytes": record.model_path.stat().st_size,
            "bits_per_weight": stats["bits_per_weight"], "bits_per_weight_source": "gguf tensors",
            "tensor_types": stats["tensor_types"]}


def quant_report_command(
    models: List[str] = typer.Argument(..., help="The quantizations to compare (installed and served)."),
    ctx: int = typer.Option(512, "--ctx", help="Perplexity window in tokens."),
    text_de: str = typer.Option("de", "--text-de", help="German text: the shipped one (de) or a UTF-8 file."),
    text_en: str = typer.Option("en", "--text-en", help="English text: the shipped one (en) or a UTF-8 file."),
    tolerance: float = typer.Option(3.0, "--tolerance", help="Recommend the smallest model within this many per cent of the best perplexity."),
    prompt_tokens: int = typer.Option(128, "--prompt-tokens", help="Prompt length for the speed measurement."),
    output_tokens: int = typer.Option(32, "--output-tokens", help="Tokens generated per speed request."),
    repeat: int = typer.Option(2, "--repeat", help="Speed requests per model."),
    note: List[str] = typer.Option([], "--note", help="A paragraph to add to quant.md (e.g. where the quantizations come from); repeatable."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output directory for quant.json and quant.md (default: quant-<timestamp>)."),
    as_json: bool = typer.Option(False, "--json", help="Print quant.json instead of the table."),
    url: Optional[str] = typer.Option(None, "--url", help="Server (default: FLEXI_HOST, else http://127.0.0.1:11434)."),
    timeout: float = typer.Option(600.0, "--timeout", help="Seconds per request."),
    api_key: Optional[str] = typer.Option(None, "--api-key", envvar="FLEXI_API_KEY", help="Sent as 'Authorization: Bearer KEY'."),
    save: bool = SAVE_OPTION,
) -> None:
    """Compare quantizations of a model: perplexity (German, English), size, bits per weight, tokens/s, recommendation."""
    from flexi.bench import quant_report
    from flexi.bench.bench import is_local, target_url
    from flexi.bench.loadtest import LoadTestError
    from flexi.bench.perplexity import check_ctx, load_text
    from flexi.bench.report import write_json

    try:
        check_ctx(ctx)
        for option, value in (("--prompt-tokens", prompt_tokens), ("--output-tokens", output_tokens),
                              ("--repeat", repeat), ("--timeout", timeout)):
            if value <= 0:
                raise LoadTestError(t("bad_positive", option=option, value=value))
        if tolerance < 0:
            raise LoadTestError(t("bad_non_negative", option="--tolerance", value=tolerance))
        config = quant_report.QuantReportConfig(url=target_url(url), models=list(models), ctx=ctx, tolerance=tolerance,
                                                prompt_tokens=prompt_tokens, output_tokens=output_tokens,
                                                repeat=repeat, timeout=timeout, api_key=api_key or None,
                                                texts={"de": text_de, "en": text_en})
        for spec in config.texts.values():
            load_text(spec)  # a missing or empty file fails now, not after the first model
    except LoadTestError as exc:
        raise fail(str(exc)) from None
    out_dir = output_dir(out, "quant")
    err = console(stderr=True)
    err.print(t("quant_report_target", models=", ".join(config.models), url=config.url))
    try:
        doc = asyncio.run(quant_report.run_quant_report(
            config, _file_facts if is_local(config.url) else None,
            lambda model, step: err.print(t("quant_report_step", model=model, step=step))))
    except LoadTestError as exc:
        raise fail(str(exc)) from None
    except KeyboardInterrupt:
        raise fail(t("interrupted"), 130) from None
    write_json(doc, out_dir / "quant.json")
    (out_dir / "quant.md").write_text(quant_report.markdown(doc, list(note)), encoding="utf-8")
    if as_json:
        typer.echo(json.dumps(doc, indent=2, ensure_ascii=False))
    else:
        locale = env_locale()
        headers, rows = quant_report.table(doc, locale)
        print_table(headers, rows)
        rec = doc["recommendation"]
        typer.echo(rec["reason"][locale] if rec else t("quant_no_recommendation"))
    failures = sum(len(r["errors"]) for r in doc["results"])
    if failures:
        typer.echo(t("warning", message=t("quant_report_failures", count=failures)), err=True)
    typer.echo(t("written", path=out_dir), err=True)
    if save:
        save_after_run(doc, config.url, api_key or None)


def register(app: typer.Typer) -> None:
    """Add `quantize`, `perplexity` and `quant-report` to the top-level `flexi` command."""
    app.command("quantize")(quantize_command)
    app.command("perplexity")(perplexity_command)
    app.command("quant-report")(quant_report_command)
