"""The `flexi` command line, mirroring `ollama`'s.

`serve` starts the server in-process; every other command is an HTTP client of a
running server (FLEXI_HOST, default 127.0.0.1:11434) speaking Ollama's API.
Failures print "Error: <message>" on stderr and exit with status 1.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from flexi import __version__
from flexi.cli import chat
from flexi.cli.admin import SUB_APPS as ADMIN_APPS
from flexi.cli.alias import alias_app
from flexi.cli.model_reports import reports_app
from flexi.cli.backend import backend_app
from flexi.cli.catalog import catalog as catalog_command
from flexi.cli.lti import lti_app
from flexi.cli.privacy import SUB_APPS as PRIVACY_APPS
from flexi.cli.client import CLIError, Client
from flexi.cli.errors import fail, handle_errors
from flexi.cli.energy import energy_app
from flexi.cli.monitor import monitor_app
from flexi.cli.rag import rag_app
from flexi.cli.template import template_app
from flexi.cli.rag_eval import register as register_rag_eval
from flexi.cli.plan import register as register_plan
from flexi.cli.bench import register as register_bench
from flexi.cli.recommend import register as register_recommend
from flexi.cli.quant import register as register_quant
from flexi.cli.safety import register as register_safety
from flexi.cli.eval import register as register_eval
from flexi.cli.create import create as create_model
from flexi.cli.format import human_bytes, human_time, processor_text, short_digest, until_text
from flexi.i18n import t
from flexi.cli.pull import ensure_model, pull_model
from flexi.cli.show import FIELDS, render_show
from flexi.cli.ui import print_table
from flexi.durations import DurationError, parse_duration

app = typer.Typer(
    name="flexi",
    help="Flexi: open LLMs for universities and schools (Ollama- and OpenAI-compatible).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
for _sub_app, _name in ADMIN_APPS + PRIVACY_APPS:  # users, keys, groups, courses, quotas, policies; usage, privacy
    app.add_typer(_sub_app, name=_name)
register_rag_eval(rag_app)  # `flexi rag eval`
register_plan(app)  # `flexi plan`
register_bench(app)  # `flexi bench`
register_recommend(app)  # `flexi recommend`
register_quant(app)  # `flexi quantize`, `flexi perplexity`, `flexi quant-report`
register_safety(app)  # `flexi safety`
register_eval(app)  # `flexi eval`
app.add_typer(rag_app, name="rag")
app.add_typer(template_app, name="template")
app.add_typer(monitor_app, name="monitor")
app.add_typer(energy_app, name="energy")
app.add_typer(backend_app, name="backend")
app.add_typer(alias_app, name="alias")
app.add_typer(reports_app, name="reports")
app.add_typer(lti_app, name="lti")
app.command("catalog")(catalog_command)


def stdin_is_tty() -> bool:
    """Whether stdin is a terminal (tests replace this to reach the REPL)."""
    try:
        return sys.stdin.isatty()
    except (AttributeError, ValueError):
        return False


def keep_alive_value(value: str | None) -> str | int | float | None:
    """Validate a --keep-alive duration; plain numbers are sent as numbers (seconds)."""
    if value is None:
        return None
    try:
        parse_duration(value)
    except DurationError:
        raise CLIError(t("bad_keep_alive", value=value)) from None
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def print_versions() -> None:
    try:
        with Client() as client:
            server = client.version()
        typer.echo(t("server_version", version=server))
    except CLIError:
        typer.echo(t("warning", message=t("no_server")), err=True)
    typer.echo(t("client_version", version=__version__))


def _version_callback(value: bool) -> None:
    if value:
        print_versions()
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", "-v", callback=_version_callback, is_eager=True,
                                 help="Show the client and server version."),
) -> None:
    """Flexi: run open-weight LLMs behind Ollama's and OpenAI's APIs."""


@app.command()
def serve(
    host: Optional[str] = typer.Option(None, "--host", help="Address to listen on, host:port."),
    home: Optional[Path] = typer.Option(None, "--home", help="Model store and state directory."),
    keep_alive: Optional[str] = typer.Option(None, "--keep-alive", help="How long idle models stay loaded (5m, 1h, 0, -1)."),
    max_loaded_models: Optional[int] = typer.Option(None, "--max-loaded-models", help="Most models loaded at once."),
    default_model: Optional[str] = typer.Option(None, "--default-model", help="Model used when a client names none."),
    auth: Optional[str] = typer.Option(None, "--auth", help="on = API keys or sign-in required; off = open (loopback only)."),
    insecure_no_auth: Optional[bool] = typer.Option(None, "--insecure-no-auth", help="Allow --auth off on a non-loopback address."),
) -> None:
    """Start the Flexi server."""
    from pydantic import ValidationError

    from flexi.config import load_settings

    try:
        settings = load_settings(host=host, home=home, keep_alive=keep_alive, max_loaded_models=max_loaded_models,
                                 default_model=default_model, auth=auth, insecure_no_auth=insecure_no_auth)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first.get("loc", ()))
        raise fail(f"{field}: {first.get('msg', 'invalid value')}") from None
    from flexi.server.app import run_server

    if problem := settings.exposure_problem():
        raise fail(problem)
    run_server(settings)


def _default_model() -> str:
    try:
        from flexi.config import load_settings

        return load_settings().default_model
    except Exception:  # a broken config file must not break `run`
        return "smollm2:135m"


@app.command()
@handle_errors
def run(
    model: Optional[str] = typer.Argument(None, help="Model name, e.g. smollm2:135m (default: the configured default model)."),
    prompt: Optional[List[str]] = typer.Argument(None, help="Prompt; without one an interactive chat starts."),
    system: Optional[str] = typer.Option(None, "--system", help="System message."),
    format: Optional[str] = typer.Option(None, "--format", help="Response format (json)."),
    keep_alive: Optional[str] = typer.Option(None, "--keep-alive", help="How long the model stays loaded after the request."),
    verbose: bool = typer.Option(False, "--verbose", help="Show timings and token rates after each answer."),
    nowordwrap: bool = typer.Option(False, "--nowordwrap", help="Don't wrap words to the next line automatically."),
    insecure: bool = typer.Option(False, "--insecure", help="Use an insecure registry when pulling."),
) -> None:
    """Run a model: answer PROMPT once, or chat interactively."""
    if format is not None and format != "json":
        raise CLIError(t("bad_format", value=format))
    opts = chat.RunOptions(model=model or _default_model(), system=system, format=format,
                           keep_alive=keep_alive_value(keep_alive), verbose=verbose, wordwrap=not nowordwrap)
    parts = list(prompt or [])
    interactive = not parts and stdin_is_tty()
    if not stdin_is_tty():
        piped = sys.stdin.read()
        if piped:
            parts.insert(0, piped)
        opts.wordwrap = False
    with Client() as client:
        ensure_model(client, opts.model, insecure)
        if not interactive:
            chat.generate_once(client, opts, " ".join(parts))
            return
        try:
            import readline  # noqa: F401  (line editing and history for input())
        except ImportError:
            pass
        chat.preload(client, opts)
        chat.Repl(client, opts).run()


@app.command("list")
@handle_errors
def list_models(prefix: Optional[str] = typer.Argument(None, help="Only models whose name starts with this.")) -> None:
    """List models."""
    with Client() as client:
        data = client.request("GET", "/api/tags")
    rows = []
    for m in data.get("models") or []:
        name = m.get("name") or m.get("model", "")
        if not prefix or name.startswith(prefix):
            rows.append((name, short_digest(m.get("digest")), human_bytes(m.get("size", 0)),
                         human_time(m.get("modified_at"), "Never")))
    print_table(["NAME", "ID", "SIZE", "MODIFIED"], rows)


app.command("ls", hidden=True, help="List models (alias of list).")(list_models)


@app.command()
@handle_errors
def ps(prefix: Optional[str] = typer.Argument(None, help="Only models whose name starts with this.")) -> None:
    """List running models."""
    with Client() as client:
        data = client.request("GET", "/api/ps")
    rows = []
    for m in data.get("models") or []:
        name = m.get("name") or m.get("model", "")
        if not prefix or name.startswith(prefix):
            size = m.get("size", 0)
            rows.append((name, short_digest(m.get("digest")), human_bytes(size),
                         processor_text(size, m.get("size_vram", 0)), str(m.get("context_length") or ""),
                         until_text(m.get("expires_at"))))
    print_table(["NAME", "ID", "SIZE", "PROCESSOR", "CONTEXT", "UNTIL"], rows)


@app.command()
@handle_errors
def pull(
    name: str = typer.Argument(..., help="Model to pull, e.g. smollm2:135m or hf.co/org/repo:Q4_K_M."),
    insecure: bool = typer.Option(False, "--insecure", help="Use an insecure registry."),
) -> None:
    """Pull a model from a registry."""
    with Client() as client:
        pull_model(client, name, insecure)


@app.command()
@handle_errors
def create(
    name: str = typer.Argument(..., help="Name of the new model."),
    file: Path = typer.Option(Path("Modelfile"), "--file", "-f", help="A Modelfile or a GGUF file."),
) -> None:
    """Create a model from a GGUF file or a Modelfile."""
    if not file.exists():
        raise CLIError(t("no_modelfile", path=file) if file == Path("Modelfile") else t("file_not_found", path=file))
    with Client() as client:
        create_model(client, name, file)


@app.command()
@handle_errors
def show(
    name: str = typer.Argument(..., help="Model name."),
    modelfile: bool = typer.Option(False, "--modelfile", help="Show the Modelfile."),
    parameters: bool = typer.Option(False, "--parameters", help="Show the parameters."),
    template: bool = typer.Option(False, "--template", help="Show the template."),
    system: bool = typer.Option(False, "--system", help="Show the system message."),
    license: bool = typer.Option(False, "--license", help="Show the license."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show all metadata."),
) -> None:
    """Show information for a model."""
    flags = {"modelfile": modelfile, "parameters": parameters, "template": template,
             "system": system, "license": license}
    chosen = [key for key in FIELDS if flags[key]]
    if len(chosen) > 1:
        raise CLIError(t("show_one_flag"))
    with Client() as client:
        resp = client.show(name, verbose=verbose)
    if chosen:
        typer.echo(str(resp.get(chosen[0]) or "").rstrip("\n"))
    else:
        typer.echo(render_show(resp, verbose=verbose))


@app.command()
@handle_errors
def stop(name: str = typer.Argument(..., help="Model to unload.")) -> None:
    """Stop (unload) a running model."""
    with Client() as client:
        try:
            client.request("POST", "/api/generate", {"model": name, "keep_alive": 0, "stream": False})
        except CLIError as exc:
            if exc.status == 404:
                raise CLIError(t("stop_not_found", name=name), 404) from None
            raise


@app.command()
@handle_errors
def cp(source: str = typer.Argument(...), destination: str = typer.Argument(...)) -> None:
    """Copy a model."""
    with Client() as client:
        client.request("POST", "/api/copy", {"source": source, "destination": destination})
    typer.echo(t("copied", src=source, dst=destination))


@app.command()
@handle_errors
def rm(names: List[str] = typer.Argument(..., help="Models to delete.")) -> None:
    """Remove one or more models."""
    with Client() as client:
        for name in names:
            client.request("DELETE", "/api/delete", {"model": name})
            typer.echo(t("deleted", name=name))


@app.command()
def version() -> None:
    """Show the client and server version."""
    print_versions()


@app.command()
def loadtest(
    url: Optional[str] = typer.Option(None, "--url", help="Server to test (default: FLEXI_HOST, else http://127.0.0.1:11434)."),
    api: str = typer.Option("ollama", "--api", help="API dialect: ollama (/api/chat) or openai (/v1/chat/completions)."),
    model: str = typer.Option("smollm2:135m", "--model", help="Model to request."),
    prompts: Optional[Path] = typer.Option(None, "--prompts", help="Prompt file: blank-line-separated blocks or a JSON list (default: the paper's 5 prompts)."),
    levels: str = typer.Option("1,10,30", "--levels", help="Concurrency levels, comma-separated."),
    repetitions: int = typer.Option(1, "--repetitions", help="Batches per prompt and level."),
    max_tokens: Optional[int] = typer.Option(None, "--max-tokens", help="Output token limit (num_predict / max_tokens)."),
    temperature: Optional[float] = typer.Option(None, "--temperature", help="Sampling temperature."),
    ignore_eos: bool = typer.Option(False, "--ignore-eos", help="Ask the server to ignore end-of-sequence (vLLM/llama.cpp extension)."),
    timeout: float = typer.Option(300.0, "--timeout", help="Seconds per request before it counts as timed out."),
    api_key: Optional[str] = typer.Option(None, "--api-key", envvar="FLEXI_API_KEY", help="Sent as 'Authorization: Bearer KEY'."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output directory (default: loadtest-<timestamp>)."),
    no_chart: bool = typer.Option(False, "--no-chart", help="Don't draw latency.png."),
    warmup: bool = typer.Option(True, "--warmup/--no-warmup", help="Send one unmeasured 1-token request first (loads the model)."),
) -> None:
    """Load-test an Ollama- or OpenAI-compatible server (FLEXI paper, Appendix A)."""
    from flexi.bench.command import run_command

    raise typer.Exit(run_command(url=url, api=api, model=model, prompts_file=prompts, levels=levels,
                                 repetitions=repetitions, max_tokens=max_tokens, temperature=temperature,
                                 ignore_eos=ignore_eos, timeout=timeout, api_key=api_key, out=out,
                                 chart=not no_chart, warmup=warmup))


if __name__ == "__main__":  # pragma: no cover
    app()
