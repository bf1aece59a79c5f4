"""`flexi alias add|list|rm`: model names that stand for a real model (`gpt-4o` → `llama3.3`).

HTTP clients of the server's `/admin/aliases` (FLEXI_HOST, an admin key in FLEXI_API_KEY), like
`flexi backend`: a change applies at once on every replica. Table headers stay English (scripts parse
them); messages follow LC_ALL/LC_MESSAGES/LANG.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import typer

from flexi.cli.client import Client
from flexi.cli.errors import handle_errors
from flexi.cli.ui import print_table
from flexi.i18n import t

alias_app = typer.Typer(help="Model aliases for clients with fixed model lists (gpt-4o → a model Flexi has): "
                             "add, list, remove.", no_args_is_help=True)

HEADERS = ["ALIAS", "TARGET", "SOURCE", "AVAILABLE"]
JSON_OPTION = typer.Option(False, "--json", help="Print JSON instead of a table.")


def _row(a: dict[str, Any]) -> list[str]:
    return [a["name"], a["target"], a["source"], "yes" if a.get("available") else "no"]


@alias_app.command("add")
@handle_errors
def add(
    name: str = typer.Argument(..., help="The alias, e.g. gpt-4o (no model may have this name)."),
    target: str = typer.Argument(..., help="The model it stands for (a real model, not another alias)."),
    replace: bool = typer.Option(False, "--replace", help="Change the target of an existing alias."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Add a model alias (or change its target with --replace); it applies at once, without a restart."""
    with Client() as client:
        if replace:
            added = client.request("PUT", f"/admin/aliases/{quote(name, safe='')}", {"target": target})
        else:
            added = client.request("POST", "/admin/aliases", {"name": name, "target": target})
    if as_json:
        typer.echo(json.dumps(added, ensure_ascii=False, indent=2))
    else:
        typer.echo(t("alias_added", name=added["name"], target=added["target"]))


@alias_app.command("list")
@handle_errors
def list_aliases(as_json: bool = JSON_OPTION) -> None:
    """List the aliases: from the configuration file (read-only) and added by admins."""
    with Client() as client:
        aliases = client.request("GET", "/admin/aliases").get("aliases") or []
    if as_json:
        typer.echo(json.dumps(aliases, ensure_ascii=False, indent=2))
    elif not aliases:
        typer.echo(t("alias_none"))
    else:
        print_table(HEADERS, [_row(a) for a in aliases])


@alias_app.command("rm")
@handle_errors
def remove(name: str = typer.Argument(..., help="The alias to remove (admin-added ones only).")) -> None:
    """Remove an admin-added alias; its target model stays."""
    with Client() as client:
        client.request("DELETE", f"/admin/aliases/{quote(name, safe='')}")
    typer.echo(t("alias_removed", name=name))
