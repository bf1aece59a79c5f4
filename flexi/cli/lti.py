"""`flexi lti add-platform|list|rm|registration-url|rotate-key`: the LTI 1.3 platforms (Moodle sites) that
may launch Flexi's course assistants. HTTP clients of the server's `/admin/lti/…` (FLEXI_HOST, an admin
key in FLEXI_API_KEY), like `flexi backend`: every replica sees a change at once (it is in the database).
Table headers stay English (scripts parse them); messages follow LC_ALL/LC_MESSAGES/LANG."""

from __future__ import annotations

import json
from typing import List, Optional

import typer

from flexi.cli.client import Client
from flexi.cli.errors import handle_errors
from flexi.cli.ui import print_table
from flexi.i18n import t

lti_app = typer.Typer(help="LTI 1.3 platforms (Moodle) that launch course assistants: add, list, remove; "
                           "dynamic-registration links; signing keys.", no_args_is_help=True)
JSON_OPTION = typer.Option(False, "--json", help="Print JSON instead of a table.")


@lti_app.command("add-platform")
@handle_errors
def add_platform(
    issuer: str = typer.Option(..., "--issuer", help="The platform's issuer (Moodle: its site URL)."),
    client_id: str = typer.Option(..., "--client-id", help="The client id the platform gave Flexi."),
    deployment_id: List[str] = typer.Option([], "--deployment-id", help="A deployment id (repeatable)."),
    auth_url: str = typer.Option(..., "--auth-url", help="Authentication request URL (Moodle: …/mod/lti/auth.php)."),
    token_url: str = typer.Option("", "--token-url", help="Access token URL (Moodle: …/mod/lti/token.php)."),
    jwks_url: str = typer.Option(..., "--jwks-url", help="Public keyset URL (Moodle: …/mod/lti/certs.php)."),
    name: str = typer.Option("", "--name", help="A name for lists."),
    trust_admins: bool = typer.Option(False, "--trust-admins", help="The platform's administrators become Flexi admins."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Register a platform by hand (or add deployment ids to one)."""
    out = Client().request("POST", "/admin/lti/platforms", {
        "issuer": issuer, "client_id": client_id, "deployment_ids": deployment_id, "auth_url": auth_url,
        "token_url": token_url, "jwks_url": jwks_url, "name": name, "trust_admins": trust_admins})
    typer.echo(json.dumps(out, indent=2) if as_json else t("lti_cli_added", id=out["id"], issuer=out["issuer"],
                                                            client_id=out["client_id"]))


@lti_app.command("list")
@handle_errors
def list_platforms(as_json: bool = JSON_OPTION) -> None:
    """The registered platforms."""
    rows = Client().request("GET", "/admin/lti/platforms")["platforms"]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    print_table(["ID", "NAME", "ISSUER", "CLIENT ID", "DEPLOYMENTS", "BY", "TRUST ADMINS"],
                [[str(r["id"]), r["name"], r["issuer"], r["client_id"], ",".join(r["deployment_ids"]),
                  r["registered_by"], "yes" if r["trust_admins"] else "no"] for r in rows])


@lti_app.command("rm")
@handle_errors
def remove_platform(platform_id: int = typer.Argument(..., help="The platform's ID (see `flexi lti list`).")) -> None:
    """Remove a platform: its launches stop; its courses, users and assistants stay."""
    Client().request("DELETE", f"/admin/lti/platforms/{platform_id}")
    typer.echo(t("lti_cli_removed", id=platform_id))


@lti_app.command("registration-url")
@handle_errors
def registration_url(hours: int = typer.Option(24, "--hours", help="How long the URL stays valid."),
                     as_json: bool = JSON_OPTION) -> None:
    """A one-time URL for Moodle's "Register a tool by URL" (dynamic registration)."""
    out = Client().request("POST", "/admin/lti/registrations", {"hours": hours})
    typer.echo(json.dumps(out, indent=2) if as_json else out["url"])


@lti_app.command("rotate-key")
@handle_errors
def rotate_key(retire: bool = typer.Option(False, "--retire", help="Stop publishing the older keys too."),
               as_json: Optional[bool] = JSON_OPTION) -> None:
    """A new signing key for deep-linking answers (older keys stay published unless --retire)."""
    out = Client().request("POST", "/admin/lti/keys/rotate", {"retire": retire})
    typer.echo(json.dumps(out) if as_json else t("lti_cli_rotated", kid=out["kid"]))
