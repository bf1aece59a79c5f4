"""`flexi usage …` and `flexi privacy export|erase|report|purge`: the data-protection
operations from the command line, directly on the state database (like `flexi users`)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any, Optional

import typer

from flexi.cli.admin import JSON_OPTION, CommandError, database, emit, handle

usage_app = typer.Typer(help="Usage totals per user (pseudonym), course, model, key, day or a key's end user.", no_args_is_help=False)
privacy_app = typer.Typer(help="Data protection: export, erase, retention purge, record of processing activities.",
                          no_args_is_help=True)


def _when(value: Optional[str], option: str) -> Optional[datetime]:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise CommandError(f"{option}: expected a date like 2026-11-01 or 2026-11-01T12:00") from None
    from datetime import UTC

    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@usage_app.callback(invoke_without_command=True)
@handle
def usage(by: str = typer.Option("day", "--by", help="user | course | model | key | day | end_user | template"),
          since: Optional[str] = typer.Option(None, "--since", help="From this UTC date/time (ISO 8601)."),
          until: Optional[str] = typer.Option(None, "--until", help="Before this UTC date/time."),
          model: Optional[str] = typer.Option(None, "--model"), course: Optional[str] = typer.Option(None, "--course"),
          key: Optional[str] = typer.Option(None, "--key", help="Only this API key's requests (id or prefix); with --by end_user: a service key's end users."),
          as_json: bool = JSON_OPTION) -> None:
    """Usage totals (no texts; users and end users appear only as pseudonyms)."""
    from flexi.access.admin_ops import find_api_key
    from flexi.access.usage_queries import GROUPS, usage_summary

    if by not in GROUPS:
        raise CommandError(f"--by must be one of {', '.join(GROUPS)}")
    with database() as s:
        key_id = find_api_key(s, key).id if key is not None else None
        rows = usage_summary(s, by, since=_when(since, "--since"), until=_when(until, "--until"), model=model,
                             course=course, key_id=key_id)
    columns = [by, "requests", "prompt_tokens", "completion_tokens", "ok", "rejected", "cancelled", "errors",
               "mean_queue_ms", "mean_generation_ms"]
    emit(rows, as_json, columns, [[r[c] for c in columns] for r in rows])


@privacy_app.command("export")
@handle
def export(user: str = typer.Argument(..., help="User id or subject."),
           output: Optional[Path] = typer.Option(None, "-o", "--output", help="Write to this file instead of stdout.")) -> None:
    """Everything stored about one person, as JSON (GDPR Art. 15)."""
    from flexi.access.admin_ops import find_user
    from flexi.access.privacy import export_user

    with database() as s:
        data = export_user(s, find_user(s, user).id, s.info["settings"])
    text = json.dumps(data, ensure_ascii=False, indent=2)
    if output:
        output.write_text(text + "\n", encoding="utf-8")
        typer.echo(f"written to {output}")
    else:
        typer.echo(text)


@privacy_app.command("erase")
@handle
def erase(user: str = typer.Argument(..., help="User id or subject."),
          yes: bool = typer.Option(False, "--yes", help="Really erase (cannot be undone).")) -> None:
    """Delete a person and their personal data; their usage numbers stay, unlinkable (GDPR Art. 17)."""
    from flexi.access.admin_ops import find_user
    from flexi.access.privacy import erase_user

    if not yes:
        raise CommandError("erasing cannot be undone; repeat with --yes")
    with database() as s:
        target = find_user(s, user)
        removed = erase_user(s, target.id)
    typer.echo(f"erased user {target.id}: " + ", ".join(f"{k} {v}" for k, v in (removed or {}).items()))


def _end_user_pseudonym(s: Any, account: str, value: str) -> str:
    from flexi.access.admin_ops import find_user
    from flexi.access.end_user_privacy import MAX_END_USER_CHARS, end_user_pseudonym
    from flexi.db.pseudonym import load_key

    if not 1 <= len(value) <= MAX_END_USER_CHARS:
        raise CommandError(f"the end user's value must be 1 to {MAX_END_USER_CHARS} characters")
    return end_user_pseudonym(find_user(s, account).id, value, load_key(s.info["settings"].home))


@privacy_app.command("export-end-user")
@handle
def export_end_user(account: str = typer.Argument(..., help="The site account (id or subject), e.g. moodle-site."),
                    value: str = typer.Argument(..., help="What the application sends as `user` for this person "
                                                          "(Moodle: SHA-256 of its site identifier and the user id).")) -> None:
    """Every usage record of one end user of a site account, as JSON (GDPR Art. 15)."""
    from flexi.access.end_user_privacy import export_end_user as export_records

    with database() as s:
        typer.echo(json.dumps(export_records(s, _end_user_pseudonym(s, account, value)), ensure_ascii=False, indent=2))


@privacy_app.command("erase-end-user")
@handle
def erase_end_user(account: str = typer.Argument(..., help="The site account (id or subject)."),
                   value: str = typer.Argument(..., help="What the application sends as `user` for this person."),
                   yes: bool = typer.Option(False, "--yes", help="Really erase (cannot be undone).")) -> None:
    """Unlink one end user's usage records and delete their quota counters (GDPR Art. 17)."""
    from flexi.access.end_user_privacy import erase_end_user as erase_records

    if not yes:
        raise CommandError("erasing cannot be undone; repeat with --yes")
    with database() as s:
        removed = erase_records(s, _end_user_pseudonym(s, account, value))
    typer.echo("erased: " + ", ".join(f"{k} {v}" for k, v in removed.items()))


@privacy_app.command("report")
@handle
def report(output: Optional[Path] = typer.Option(None, "-o", "--output", help="Write to this file.")) -> None:
    """The record of processing activities (Art. 30 GDPR) from the current configuration, Markdown."""
    from flexi.access.admin_ops import stored_backends
    from flexi.access.report import processing_report

    with database() as s:  # with the backends admins added at run time
        text = processing_report(s.info["settings"], stored_backends(s))
    if output:
        output.write_text(text, encoding="utf-8")
        typer.echo(f"written to {output}")
    else:
        typer.echo(text)


@privacy_app.command("purge")
@handle
def purge() -> None:
    """Apply the retention periods now (the server does it hourly)."""
    from flexi.access.privacy import purge_expired

    with database() as s:
        settings = s.info["settings"]
        removed = purge_expired(s.get_bind(), settings)
    typer.echo("removed: " + ", ".join(f"{k} {v}" for k, v in removed.items()))


SUB_APPS = [(usage_app, "usage"), (privacy_app, "privacy")]
