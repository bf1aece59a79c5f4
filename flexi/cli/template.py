"""`flexi template list|show|add|edit|run|rm`: prompt templates (issue 15) from the shell.

HTTP clients of a running server (FLEXI_HOST, the key in FLEXI_API_KEY) over the routes the web interface
uses (`/templates…`), so the server's rules apply unchanged: a course's teachers and admins add, edit and
remove, whoever may run a template lists, shows and runs it. A template's fields come as a JSON file (the
body of `POST /templates`, `-` for standard input); `run` takes parameters as NAME=VALUE (NAME=@FILE reads the
value from a file) and converts them by the template's declared types. Table headers stay English (scripts
parse them); messages follow LC_ALL/LC_MESSAGES/LANG (texts: `flexi.i18n.templates`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, List, Optional

import typer

from flexi.cli.client import Client, CLIError
from flexi.cli.errors import handle_errors
from flexi.cli.ui import print_table
from flexi.i18n import t

template_app = typer.Typer(help="Prompt templates: list, show, add, edit, run, remove.", no_args_is_help=True)

REF_ARG = typer.Argument(..., help="The template's slug or id (see `flexi template list`).")
JSON_OPTION = typer.Option(False, "--json", help="Print JSON instead of a table.")


def _print_json(data: Any) -> None:
    typer.echo(json.dumps(data, ensure_ascii=False, indent=2))


def _read(path: str) -> str:
    try:
        return sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise CLIError(t("tpl_cli_file", path=path, detail=exc.strerror or exc)) from None


def _fields(path: str) -> dict[str, Any]:
    try:
        data = json.loads(_read(path))
    except ValueError as exc:
        raise CLIError(t("tpl_cli_file", path=path, detail=exc)) from None
    if not isinstance(data, dict):
        raise CLIError(t("tpl_cli_file", path=path, detail="a JSON object is expected"))
    return data


def _params_text(params: list[dict[str, Any]]) -> str:
    return ", ".join(p["name"] + ("" if p.get("required", True) or p["type"] == "course" else "?") for p in params)


@template_app.command("list")
@handle_errors
def list_templates(everything: bool = typer.Option(False, "--all", help="Admins: every template on the server."),
                   as_json: bool = JSON_OPTION) -> None:
    """Templates you may run or change."""
    with Client() as client:
        found = client.request("GET", "/templates?all=true" if everything else "/templates").get("templates") or []
    if as_json:
        _print_json(found)
        return
    if not found:
        typer.echo(t("tpl_cli_none"))
        return
    print_table(["SLUG", "VERSION", "NAME", "COURSE", "MODEL", "PARAMETERS"],
                [[x["slug"], str(x["version"]), x["name"], x["course"]["name"], x["model"],
                  _params_text(x["parameters"])] for x in found])


@template_app.command("show")
@handle_errors
def show(ref: str = REF_ARG, version: Optional[int] = typer.Option(None, "--version", help="An older version."),
         as_json: bool = JSON_OPTION) -> None:
    """A template's parameters, model and (for its course's teachers) instructions."""
    with Client() as client:
        data = client.request("GET", f"/templates/{ref}" if version is None else f"/templates/{ref}/versions/{version}")
    if as_json:
        _print_json(data)
        return
    for label, value in (("name", data.get("name")), ("slug", data.get("slug")), ("version", data.get("version")),
                         ("model", data.get("model")), ("description", data.get("description"))):
        if value not in (None, ""):
            typer.echo(f"{label:12} {value}")
    if data.get("parameters"):
        typer.echo("")
        print_table(["PARAMETER", "TYPE", "REQUIRED", "ALLOWED"], [[
            p["name"], p["type"], "yes" if p.get("required", True) else "no",
            ", ".join(p.get("values") or []) if p["type"] == "enum" else
            f"≤ {p.get('max_length')} chars" if p["type"] == "string" else
            f"{p.get('min', '')} … {p.get('max', '')}" if p["type"] in ("integer", "number") else
            f"course {p.get('field')}"] for p in data["parameters"]])
    if data.get("instructions"):
        typer.echo("")
        typer.echo(data["instructions"])


@template_app.command("add")
@handle_errors
def add(file: str = typer.Argument(..., help="A JSON file with the template's fields (`-`: standard input)."),
        course: Optional[int] = typer.Option(None, "--course", help="The course id (overrides the file's)."),
        slug: Optional[str] = typer.Option(None, "--slug", help="The template's short name (overrides the file's)."),
        as_json: bool = JSON_OPTION) -> None:
    """Create a template for a course you teach."""
    body = _fields(file)
    if course is not None:
        body["course_id"] = course
    if slug is not None:
        body["slug"] = slug
    with Client() as client:
        made = client.request("POST", "/templates", body)
    if as_json:
        _print_json(made)
    else:
        typer.echo(t("tpl_cli_added", slug=made["slug"], version=made["version"]))


@template_app.command("edit")
@handle_errors
def edit(ref: str = REF_ARG,
         file: Optional[str] = typer.Argument(None, help="A JSON file with the fields to change (`-`: standard input)."),
         disable: Optional[bool] = typer.Option(None, "--disable/--enable", help="Switch the template off or on."),
         as_json: bool = JSON_OPTION) -> None:
    """Change a template: a changed text, parameter list, model, options or audience makes a new version."""
    body = _fields(file) if file is not None else {}
    if disable is not None:
        body["disabled"] = disable
    with Client() as client:
        changed = client.request("PUT", f"/templates/{ref}", body)
    if as_json:
        _print_json(changed)
    else:
        typer.echo(t("tpl_cli_edited", slug=changed["slug"], version=changed["version"]))


def _values(given: list[str], params: list[dict[str, Any]]) -> dict[str, Any]:
    """NAME=VALUE pairs as the template's types want them (the server checks them again, by the same rules)."""
    kinds = {p["name"]: p["type"] for p in params}
    out: dict[str, Any] = {}
    for item in given:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise CLIError(t("tpl_cli_param", given=item))
        if value.startswith("@"):
            value = _read(value[1:])
        kind = kinds.get(name)
        try:
            out[name] = int(value) if kind == "integer" else float(value) if kind == "number" else value
        except ValueError:
            raise CLIError(t("tpl_cli_param", given=item)) from None
    return out


@template_app.command("run")
@handle_errors
def run(ref: str = REF_ARG,
        parameters: Optional[List[str]] = typer.Argument(None, help="NAME=VALUE (NAME=@FILE reads the value from a file)."),
        version: Optional[int] = typer.Option(None, "--version", help="Run an older version."),
        as_json: bool = typer.Option(False, "--json", help="Print the final answer object as JSON.")) -> None:
    """Run a template and print its answer as it is generated."""
    with Client() as client:
        template = client.request("GET", f"/templates/{ref}")
        body: dict[str, Any] = {"parameters": _values(list(parameters or []), template["parameters"]),
                                "stream": not as_json}
        if version is not None:
            body["version"] = version
        if as_json:
            _print_json(client.request("POST", f"/templates/{ref}/run", body))
            return
        for event in client.stream("POST", f"/templates/{ref}/run", body):
            typer.echo((event.get("message") or {}).get("content", ""), nl=False)
    typer.echo("")


@template_app.command("rm")
@handle_errors
def rm(ref: str = REF_ARG) -> None:
    """Delete a template and its versions (its usage numbers stay)."""
    with Client() as client:
        found = client.request("GET", f"/templates/{ref}")
        client.request("DELETE", f"/templates/{ref}")
    typer.echo(t("tpl_cli_removed", slug=found["slug"]))
