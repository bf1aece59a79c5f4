"""`flexi backend add|list|rm|check`: the remote engines a running server serves models from.

HTTP clients of the server's `/admin/backends` (FLEXI_HOST, an admin key in FLEXI_API_KEY), like
`flexi rag`: a change applies at once on every replica, and `check` probes the engine from the server,
where requests go from. The backend's API key comes from an environment variable (`--api-key-env`) or
a hidden prompt (`--api-key-prompt`), never from the command line (shell history, `ps`), and is never
printed. Table headers stay English (scripts parse them); messages follow LC_ALL/LC_MESSAGES/LANG.
"""

from __future__ import annotations

import json
import os
from typing import Any, List, Optional

import typer

from flexi.cli.client import CLIError, Client
from flexi.cli.errors import handle_errors
from flexi.cli.ui import print_table
from flexi.i18n import t

backend_app = typer.Typer(help="Remote engines (vLLM, Ollama, llama-server, another Flexi, OpenAI-compatible): "
                               "add, list, remove, check.", no_args_is_help=True)

KINDS = ("openai", "ollama", "vllm", "llamacpp", "flexi")
HEADERS = ["NAME", "SOURCE", "KIND", "URL", "MODELS", "MAX", "EXTERNAL", "ENABLED", "CIRCUIT", "IN FLIGHT"]
JSON_OPTION = typer.Option(False, "--json", help="Print JSON instead of a table.")


def _models(values: List[str]) -> dict[str, str]:
    """OURS or OURS=THEIRS, repeated or comma-separated."""
    mapping: dict[str, str] = {}
    for value in values:
        for part in (p.strip() for p in value.split(",")):
            if part:
                ours, _, theirs = part.partition("=")
                mapping[ours.strip()] = theirs.strip() or ours.strip()
    if not mapping:
        raise CLIError(t("backend_no_models"))
    return mapping


def _api_key(env_name: str | None, prompt: bool) -> str | None:
    if env_name:
        value = os.environ.get(env_name, "").strip()
        if not value:
            raise CLIError(t("backend_key_env_empty", name=env_name))
        return value
    if prompt:
        return typer.prompt(t("backend_key_prompt"), hide_input=True).strip() or None
    return None


def _models_text(models: dict[str, str]) -> str:
    return ", ".join(ours if ours == theirs else f"{ours}={theirs}" for ours, theirs in models.items())


def _row(b: dict[str, Any]) -> list[str]:
    return [b["name"], b["source"], b["kind"], b["url"], _models_text(b.get("models") or {}),
            str(b.get("max_concurrency", "")), "yes" if b.get("external") else "no", "yes" if b.get("enabled") else "no",
            (b.get("health") or {}).get("circuit", "-"), str((b.get("health") or {}).get("in_flight", "-"))]


@backend_app.command("add")
@handle_errors
def add(
    name: str = typer.Argument(..., help="Short unique name (letters, digits, . _ -)."),
    url: str = typer.Option(..., "--url", help="Base URL: .../v1 for openai, vllm, llamacpp; the server root for ollama, flexi."),
    kind: str = typer.Option(..., "--kind", help="Wire dialect: openai, ollama, vllm, llamacpp or flexi."),
    model: List[str] = typer.Option(..., "--model", "-m", help="OURS or OURS=THEIRS (Flexi's name = the engine's); repeat for more."),
    api_key_env: Optional[str] = typer.Option(None, "--api-key-env", help="Environment variable holding the engine's API key."),
    api_key_prompt: bool = typer.Option(False, "--api-key-prompt", help="Ask for the engine's API key (hidden)."),
    max_concurrency: int = typer.Option(8, "--max-concurrency", min=1, max=1024, help="Most requests sent at once; the rest wait in Flexi."),
    external: bool = typer.Option(False, "--external", help="Outside the campus (a cloud provider): prompts leave the university."),
    enable: bool = typer.Option(False, "--enable", help="Consent for an external backend: without it, it stays off."),
    capability: List[str] = typer.Option(["completion", "tools"], "--capability",
                                         help="What the engine's models can do: completion, tools, vision, thinking; repeat for more."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Add a remote backend; its models are served at once, without a restart."""
    if kind not in KINDS:
        raise CLIError(t("backend_bad_kind", kind=kind[:40], kinds=", ".join(KINDS)))
    if external and not enable:
        raise CLIError(t("backend_external_consent", name=name))
    body: dict[str, Any] = {"name": name, "url": url, "kind": kind, "models": _models(model),
                            "max_concurrency": max_concurrency, "external": external, "capabilities": capability}
    if enable:
        body["enabled"] = True
    key = _api_key(api_key_env, api_key_prompt)
    if key:
        body["api_key"] = key
    with Client() as client:
        added = client.request("POST", "/admin/backends", body)
    if as_json:
        typer.echo(json.dumps(added, ensure_ascii=False, indent=2))
    else:
        typer.echo(t("backend_added", name=added["name"], models=_models_text(added["models"])))


@backend_app.command("list")
@handle_errors
def list_backends(as_json: bool = JSON_OPTION) -> None:
    """List the backends: from the configuration file (read-only) and added by admins."""
    with Client() as client:
        backends = client.request("GET", "/admin/backends").get("backends") or []
    if as_json:
        typer.echo(json.dumps(backends, ensure_ascii=False, indent=2))
    elif not backends:
        typer.echo(t("backend_none"))
    else:
        print_table(HEADERS, [_row(b) for b in backends])


@backend_app.command("rm")
@handle_errors
def remove(name: str = typer.Argument(..., help="The backend to remove (admin-added ones only).")) -> None:
    """Remove an admin-added backend; requests it is running finish first."""
    with Client() as client:
        client.request("DELETE", f"/admin/backends/{name}")
    typer.echo(t("backend_removed", name=name))


@backend_app.command("check")
@handle_errors
def check(name: str = typer.Argument(...), as_json: bool = JSON_OPTION) -> None:
    """Probe a backend now: reachable, latency, the models it lists. Exit 1 when unreachable."""
    with Client() as client:
        result = client.request("POST", f"/admin/backends/{name}/check")
    if as_json:
        typer.echo(json.dumps(result, ensure_ascii=False, indent=2))
    elif result.get("reachable"):
        typer.echo(t("backend_reachable", name=name, ms=result.get("latency_ms")))
        if result.get("models"):
            typer.echo(t("backend_lists", models=", ".join(result["models"])))
        if result.get("missing"):
            typer.echo(t("backend_missing", models=", ".join(result["missing"])))
        if result.get("error"):
            typer.echo(t("warning", message=result["error"]), err=True)
    if not result.get("reachable"):
        if not as_json:
            typer.echo(t("error", message=t("backend_unreachable", name=name, detail=result.get("error") or "")), err=True)
        raise typer.Exit(1)
