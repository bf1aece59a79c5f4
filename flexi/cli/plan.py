"""`flexi plan MODEL --users N --ctx C`: memory a model needs for N concurrent users, whether it fits this
host's budget (FLEXI_MAX_MEMORY), `--mem` GiB or a GPU of the built-in table, the most users that fit, and an
upper bound of one stream's speed from memory bandwidth. No server needed.

MODEL is an installed model, a local .gguf file, or one not yet pulled (`hf.co/ORG/REPO:QUANT` or an https
URL): then only the file's GGUF header is read, with ranged requests through the pull guard. The arithmetic
is `flexi.scheduler.capacity` over the scheduler's own memory estimate. Texts: `flexi.i18n.plan`.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any, Optional

import typer

from flexi.cli.errors import fail
from flexi.cli.ui import console
from flexi.i18n import env_locale, t

MIB, GIB = 1024**2, 1024**3


def _number(value: float, digits: int) -> str:
    text = f"{value:,.{digits}f}"
    return text.replace(",", "\0").replace(".", ",").replace("\0", ".") if env_locale() == "de" else text


def _size(n: int | float) -> str:
    return f"{_number(n / GIB, 2)} GiB" if abs(n) >= GIB else f"{_number(n / MIB, 0)} MiB"


def _model(name: str, settings: Any, insecure: bool) -> tuple[str, int, Any]:
    """(label, file size, GGUFInfo) of an installed model, a local .gguf, or a remote one's header."""
    from flexi.store.gguf_meta import read_gguf_info
    from flexi.store.names import parse_model_name
    from flexi.store.remote_gguf import read_remote_info
    from flexi.store.store import DEFAULT_MODEL_NAME, ModelStore, default_model_file

    if name.lower().endswith(".gguf") and Path(name).is_file():
        path = Path(name)
        return path.name, path.stat().st_size, read_gguf_info(path)
    if not name.lower().startswith(("http://", "https://")):
        store = ModelStore(settings.models_dir)
        if store.exists(name):
            record = store.get(name)
            return record.name, record.model_path.stat().st_size, record.info
        bundled = default_model_file()
        if bundled is not None and parse_model_name(name).canonical() == parse_model_name(DEFAULT_MODEL_NAME).canonical():
            return DEFAULT_MODEL_NAME, bundled.stat().st_size, read_gguf_info(bundled)  # registered on first start
        if not parse_model_name(name).is_huggingface:
            raise typer.Exit(code=_not_found(name))
    console(stderr=True).print(t("plan_reading_remote", name=name))
    remote = asyncio.run(read_remote_info(name, settings, insecure=insecure))
    return remote.label, remote.size, remote.info


def _not_found(name: str) -> int:
    typer.echo(t("error", message=f'model "{name}" not found'), err=True)
    return 1


def plan_command(
    model: str = typer.Argument(..., help="Installed model, a .gguf file, hf.co/ORG/REPO:QUANT or an https URL of a .gguf."),
    users: int = typer.Option(1, "--users", "-u", min=1, help="Concurrent users (sequences, one slot each)."),
    ctx: int = typer.Option(4096, "--ctx", "-c", min=1, help="Context per user in tokens (num_ctx)."),
    gpu_name: Optional[str] = typer.Option(None, "--gpu", help="A GPU of the built-in table (a100-80gb, h100, l40s, rtx-4090, t4, …)."),
    mem: Optional[float] = typer.Option(None, "--mem", min=0.01, help="Memory budget in GiB (default: FLEXI_MAX_MEMORY of this host)."),
    bandwidth: Optional[float] = typer.Option(None, "--bandwidth", min=0.1, help="Memory bandwidth in GB/s for the speed bound (a GPU brings its own)."),
    cache_type: str = typer.Option("f16", "--cache-type", help="KV cache type: f16 (what the runners use), q8_0 or q4_0."),
    insecure: bool = typer.Option(False, "--insecure", help="Allow plain http for a URL (as `pull --insecure`)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Plan memory: weights + KV cache + buffers for N users, whether it fits, the most users, speed bound."""
    from flexi.config import load_settings
    from flexi.engine.types import EngineError
    from flexi.scheduler.capacity import GPUS, Device, gpu, plan

    if cache_type not in ("f16", "q8_0", "q4_0"):
        raise fail(t("plan_bad_cache_type"))
    if gpu_name and mem is not None:
        raise fail(t("plan_gpu_and_mem"))
    settings = load_settings()
    if gpu_name:
        device = gpu(gpu_name)
        if device is None:
            raise fail(t("plan_unknown_gpu", name=gpu_name, known=", ".join(GPUS)))
    elif mem is not None:
        device = Device(f"{_number(mem, 2)} GiB", int(mem * GIB), None, "mem")
    else:
        device = Device("host", settings.max_memory, None, "budget")
    if bandwidth is not None:
        device = Device(device.name, device.memory, bandwidth * 1e9, device.source)
    try:
        label, size, info = _model(model, settings, insecure)
    except EngineError as exc:
        raise fail(str(exc)) from None
    result = plan(size, info, users, ctx, device, cache_type)
    if as_json:
        data = {"model": label, "architecture": info.architecture, "parameters": info.parameter_count,
                "quantization": info.quantization_level, "context_length": info.context_length, **result.to_dict()}
        data["notes"] = [{**note, "text": t(key, **values)} for note, (key, values) in zip(data["notes"], result.notes)]
        typer.echo(json.dumps(data, ensure_ascii=False, indent=2))
        return
    _render(label, size, info, result)


def _render(label: str, size: int, info: Any, result: Any) -> None:
    from rich.table import Table

    from flexi.scheduler.memory import CACHE_TYPES

    out = console()
    out.print(t("plan_title", model=label))
    table = Table(box=None, pad_edge=False, padding=(0, 2), show_header=False)
    table.add_column()
    table.add_column()
    shape, memory, device = result.shape, result.memory, result.device
    heads = "/".join(str(h) for h in sorted(set(shape.kv_heads)))
    dim = str(shape.key_dim) if shape.key_dim == shape.value_dim else f"({shape.key_dim}+{shape.value_dim})/2"
    bpe = CACHE_TYPES[result.cache_type]
    rows = [
        (t("plan_model"), t("plan_model_value", arch=info.architecture, params=info.parameter_size or "?",
                            quant=info.quantization_level, size=_size(size))),
        (t("plan_request"), t("plan_request_value", users=result.users, ctx=result.num_ctx, cache=result.cache_type)),
        (t("plan_kv_shape"), t("plan_kv_shape_value", layers=shape.layers, heads=heads, dim=dim,
                               bpe=_number(bpe, 4).rstrip("0").rstrip(",."),
                               per_token=f"{_number(shape.elements_per_token() * bpe / 1024, 1)} KiB")),
        (t("plan_weights"), _size(memory.weights)),
        (t("plan_kv", users=result.users, ctx=result.num_ctx), _size(memory.kv_cache)),
        (t("plan_compute"), _size(memory.compute)),
        (t("plan_embedder"), _size(memory.embedder)),
        (t("plan_scoring"), _size(memory.scoring)),
        (t("plan_total"), _size(memory.total)),
    ]
    name = {"budget": t("plan_device_budget"), "mem": device.name}.get(device.source, device.name)
    rows.append((t("plan_device"), f"{name}, {_size(device.memory)}"))
    fits = (t("plan_fits_yes", free=_size(device.memory - memory.total), budget=_size(device.memory)) if result.fits
            else t("plan_fits_no", short=_size(memory.total - device.memory), budget=_size(device.memory)))
    rows.append((t("plan_fits"), fits))
    rows.append((t("plan_max_users", ctx=result.num_ctx), str(result.max_users)))
    if result.tokens_per_second_bound is not None:
        speed = t("plan_speed_value", tps=_number(result.tokens_per_second_bound, 0),
                  bw=_number((device.bandwidth or 0) / 1e9, 0))
    else:
        speed = t("plan_speed_unknown")
    rows.append((t("plan_speed"), speed))
    for key, value in rows:
        table.add_row(key, value)
    out.print(table)
    for key, values in result.notes:
        out.print(t(key, **values))


def register(app: typer.Typer) -> None:
    """Add `plan` to the top-level `flexi` command."""
    app.command("plan")(plan_command)
