"""`flexi users|keys|groups|courses|quotas|policies …`: administration from the shell.

Unlike the model commands these talk to the state database directly (the one
of FLEXI_HOME / FLEXI_DATABASE_URL, migrated first), not to a running server:
so the first admin can be created on a fresh install before anyone can sign
in, and an admin locked out of the REST API can still recover. The rules are
the REST API's: both call `flexi.access.admin_ops`. A running server notices
revoked keys and disabled users on the next request (and ends their open
streams within about a second).

Output is a table, or JSON with `--json` for scripts. Messages follow the
language of LC_ALL/LC_MESSAGES/LANG like the rest of the CLI (texts: `flexi.i18n.admin`).
"""

from __future__ import annotations

import contextlib
import functools
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import typer

from flexi.i18n import env_locale, t
from flexi.cli.ui import print_table

F = TypeVar("F", bound=Callable[..., Any])

JSON_OPTION = typer.Option(False, "--json", help="Print JSON instead of a table.")


class CommandError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def handle(func: F) -> F:
    """AdminError, configuration and database failures → "Error: …" and exit 1, never a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from pydantic import ValidationError
        from sqlalchemy.exc import SQLAlchemyError

        from flexi.access.admin_ops import AdminError

        try:
            return func(*args, **kwargs)
        except AdminError as exc:
            message = exc.localized(env_locale())
        except CommandError as exc:
            message = exc.message
        except ValidationError as exc:
            first = exc.errors()[0]
            message = t("config", detail=f"{'.'.join(str(p) for p in first.get('loc', ()))}: {first.get('msg')}")
        except SQLAlchemyError as exc:
            message = t("database", url=_shown_url(), detail=str(getattr(exc, "orig", None) or exc).splitlines()[0])
        except KeyboardInterrupt:
            typer.echo("", err=True)
            raise typer.Exit(130) from None
        typer.echo(t("error", message=message), err=True)
        raise typer.Exit(1)

    return wrapper  # type: ignore[return-value]


def _shown_url() -> str:
    try:
        from flexi.config import load_settings
        from flexi.db.engine import resolve_url

        settings = load_settings()
        return resolve_url(settings.database_url, settings.home).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 (only for an error message)
        return "(configured database)"


@contextlib.contextmanager
def database() -> Iterator[Any]:
    """A session on the configured state database (migrated to the newest schema); commits at the end."""
    from flexi.config import load_settings
    from flexi.db.engine import make_engine, session_factory
    from flexi.db.migrate import upgrade

    settings = load_settings()
    engine = make_engine(settings.database_url, settings.home)
    try:
        upgrade(engine)
        with session_factory(engine)() as session:
            session.info["settings"] = settings
            yield session
            session.commit()
    finally:
        engine.dispose()


def emit(data: Any, as_json: bool, headers: Sequence[str] | None = None, rows: Sequence[Sequence[Any]] | None = None,
         message: str | None = None) -> None:
    if as_json:
        typer.echo(json.dumps(data, ensure_ascii=False, indent=2, default=str))
    elif headers is not None and rows is not None:
        print_table(headers, [["" if c is None else str(c) for c in row] for row in rows])
    elif message:
        typer.echo(message)


def _short(value: str | None) -> str:
    return (value or "")[:19].replace("T", " ")


def _csv(values: Sequence[str] | None) -> str:
    return "*" if values is None else ",".join(values) or "-"


def _split(values: Sequence[str] | None) -> list[str] | None:
    """Repeated or comma-separated option values."""
    if values is None:
        return None
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def _number(option: str, value: str | None) -> tuple[bool, int | None]:
    """(given, value) for a limit option: digits, or none/unlimited for no limit."""
    if value is None:
        return False, None
    text = value.strip().lower()
    if text in ("none", "unlimited", "null", "-"):
        return True, None
    if text.isascii() and text.isdigit() and len(text) <= 12:
        return True, int(text)
    raise CommandError(t("bad_number", option=option, value=value[:40]))


def _password_from(stdin: bool, prompt: bool) -> str | None:
    if stdin:
        line = sys.stdin.readline().rstrip("\r\n")
        if not line:
            raise CommandError(t("no_password"))
        return line
    if prompt:
        return typer.prompt(t("password_prompt"), hide_input=True, confirmation_prompt=True)
    return None


# --- users -----------------------------------------------------------------------------------------------
users_app = typer.Typer(help="Manage users (directly in the state database).", no_args_is_help=True)

USER_HEADERS = ["ID", "SUBJECT", "NAME", "ROLE", "LOCALE", "STATUS", "CREATED"]


def _user_row(v: dict[str, Any]) -> list[Any]:
    return [v["id"], v["subject"], v["display_name"], v["role"], v["locale"],
            "disabled" if v["disabled"] else "active", _short(v["created_at"])]


@users_app.command("list")
@handle
def users_list(role: str | None = typer.Option(None, "--role", help="Only this role."),
               search: str | None = typer.Option(None, "--search", "-s", help="Substring of subject, name or e-mail."),
               disabled: bool | None = typer.Option(None, "--disabled/--enabled", help="Only disabled or enabled users."),
               limit: int = typer.Option(100, "--limit"), offset: int = typer.Option(0, "--offset"),
               as_json: bool = JSON_OPTION) -> None:
    """List users."""
    from flexi.access import admin_ops as ops

    with database() as s:
        views = [ops.user_view(u) for u in ops.list_users(s, role=role, search=search, disabled=disabled,
                                                          limit=limit, offset=offset)]
    emit(views, as_json, USER_HEADERS, [_user_row(v) for v in views])


@users_app.command("add")
@handle
def users_add(subject: str = typer.Argument(..., help="User name or SSO subject."),
              role: str = typer.Option("student", "--role", help="admin, teacher, student, researcher or service."),
              name: str | None = typer.Option(None, "--name", help="Display name."),
              email: str | None = typer.Option(None, "--email"),
              locale: str | None = typer.Option(None, "--locale", help="Language of the user's messages: de (default) or en."),
              password_stdin: bool = typer.Option(False, "--password-stdin", help="Read a password for local sign-in from stdin."),
              password: bool = typer.Option(False, "--password", help="Ask for a password for local sign-in."),
              as_json: bool = JSON_OPTION) -> None:
    """Add a user (e.g. the first admin: flexi users add alice --role admin --password-stdin)."""
    from flexi.access import admin_ops as ops
    from flexi.db.pseudonym import load_key

    secret = _password_from(password_stdin, password)
    with database() as s:
        settings = s.info["settings"]
        user = ops.create_user(s, load_key(settings.home), subject, display_name=name, email=email, role=role,
                               locale=locale, password=secret)
        view = ops.user_view(user)
    emit(view, as_json, message=t("user_added", subject=view["subject"], id=view["id"], role=view["role"]))


@users_app.command("show")
@handle
def users_show(user: str = typer.Argument(..., help="Subject or id."), as_json: bool = JSON_OPTION) -> None:
    """Show a user with groups, courses and keys."""
    from flexi.access import admin_ops as ops
    from flexi.access.admin_ops.memberships import memberships_of

    with database() as s:
        row = ops.find_user(s, user)
        view = ops.user_view(row)
        view["groups"] = [name for name, _ in memberships_of(ops.GROUPS, s, row.id)]
        view["courses"] = [{"name": n, "role": r} for n, r in memberships_of(ops.COURSES, s, row.id)]
        view["keys"] = [ops.key_view(k) for k in ops.list_api_keys(s, owner_id=row.id, limit=ops.MAX_LIMIT)]
        view["quota"] = ops.quota_usage(s, "user", row.id, _role_defaults())
    if as_json:
        emit(view, True)
        return
    pairs = [(k, view[k]) for k in ("id", "subject", "display_name", "email", "role", "locale", "created_at",
                                    "disabled_at", "has_password", "pseudonym")]
    pairs += [("groups", ", ".join(view["groups"]) or "-"),
              ("courses", ", ".join(f"{c['name']} ({c['role']})" for c in view["courses"]) or "-"),
              ("keys", ", ".join(f"{k['prefix']} ({k['state']})" for k in view["keys"]) or "-")]
    quota = view["quota"]
    pairs += [(name, f"{quota['used'][name]} / {quota['limits'][name] if quota['limits'][name] is not None else '∞'}")
              for name in ops.QUOTA_FIELDS]
    print_table(["FIELD", "VALUE"], [(k, "" if v is None else str(v)) for k, v in pairs])


@users_app.command("set")
@handle
def users_set(user: str = typer.Argument(..., help="Subject or id."),
              role: str | None = typer.Option(None, "--role"),
              name: str | None = typer.Option(None, "--name", help="Display name ('' clears it)."),
              email: str | None = typer.Option(None, "--email", help="E-mail ('' clears it)."),
              locale: str | None = typer.Option(None, "--locale"),
              force: bool = typer.Option(False, "--force", help="Allow demoting the last enabled admin."),
              as_json: bool = JSON_OPTION) -> None:
    """Change a user's role, name, e-mail or language."""
    changes = {k: v for k, v in {"role": role, "display_name": name, "email": email, "locale": locale}.items()
               if v is not None}
    if not changes:
        raise CommandError(t("nothing_to_set"))
    _update(user, changes, force, as_json, "user_changed")


def _update(user: str, changes: dict[str, Any], force: bool, as_json: bool, message: str) -> None:
    from flexi.access import admin_ops as ops

    with database() as s:
        row = ops.find_user(s, user)
        view = ops.user_view(ops.update_user(s, row.id, changes, force=force).user)
    emit(view, as_json, message=t(message, subject=view["subject"]))


@users_app.command("disable")
@handle
def users_disable(user: str = typer.Argument(..., help="Subject or id."),
                  force: bool = typer.Option(False, "--force", help="Allow disabling the last enabled admin."),
                  as_json: bool = JSON_OPTION) -> None:
    """Disable a user: their keys and sign-ins stop working at once."""
    _update(user, {"disabled": True}, force, as_json, "user_disabled")


@users_app.command("enable")
@handle
def users_enable(user: str = typer.Argument(..., help="Subject or id."), as_json: bool = JSON_OPTION) -> None:
    """Enable a disabled user again."""
    _update(user, {"disabled": False}, False, as_json, "user_enabled")


@users_app.command("passwd")
@handle
def users_passwd(user: str = typer.Argument(..., help="Subject or id."),
                 stdin: bool = typer.Option(False, "--stdin", "--password-stdin", help="Read the password from stdin."),
                 clear: bool = typer.Option(False, "--clear", help="Remove the password (SSO sign-in only)."),
                 as_json: bool = JSON_OPTION) -> None:
    """Set or remove the password for local sign-in."""
    from flexi.access import admin_ops as ops

    secret = None if clear else _password_from(stdin, not stdin)
    with database() as s:
        view = ops.user_view(ops.set_password(s, ops.find_user(s, user).id, secret))
    emit(view, as_json, message=t("password_cleared" if clear else "password_set", subject=view["subject"]))


@users_app.command("rm")
@handle
def users_rm(user: str = typer.Argument(..., help="Subject or id."),
             yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask."),
             force: bool = typer.Option(False, "--force", help="Allow deleting the last enabled admin."),
             as_json: bool = JSON_OPTION) -> None:
    """Delete a user with their keys and memberships (usage records stay, pseudonymous)."""
    from flexi.access import admin_ops as ops

    with database() as s:
        row = ops.find_user(s, user)
        if not yes and not typer.confirm(t("confirm_rm", subject=row.subject)):
            raise typer.Exit(1)
        view = ops.user_view(ops.delete_user(s, row.id, force=force))
    emit(view, as_json, message=t("user_removed", subject=view["subject"]))


# --- keys -------------------------------------------------------------------------------------------------
keys_app = typer.Typer(help="Manage API keys (shown once, stored as a hash).", no_args_is_help=True)

KEY_HEADERS = ["ID", "PREFIX", "OWNER", "NAME", "SCOPES", "MODELS", "COURSE", "STATE", "EXPIRES", "LAST USED"]


@keys_app.command("list")
@handle
def keys_list(user: str | None = typer.Option(None, "--user", "-u", help="Only this user's keys (subject or id)."),
              state: str = typer.Option("all", "--state", help="active, revoked, expired or all."),
              limit: int = typer.Option(100, "--limit"), offset: int = typer.Option(0, "--offset"),
              as_json: bool = JSON_OPTION) -> None:
    """List API keys (prefixes only; secrets cannot be shown again)."""
    from flexi.access import admin_ops as ops

    with database() as s:
        owner_id = ops.find_user(s, user).id if user else None
        rows = ops.list_api_keys(s, owner_id=owner_id, state=state, limit=limit, offset=offset)
        views = [{**ops.key_view(r), "owner": r.owner.subject} for r in rows]
    emit(views, as_json, KEY_HEADERS, [
        [v["id"], v["prefix"], v["owner"], v["name"], ",".join(v["scopes"]), _csv(v["models"]), v["course_id"],
         v["state"], _short(v["expires_at"]) or "never", _short(v["last_used_at"]) or "never"] for v in views])


@keys_app.command("create")
@handle
def keys_create(user: str = typer.Argument(..., help="Owner (subject or id)."),
                name: str = typer.Option("", "--name", help="What the key is for."),
                scope: list[str] | None = typer.Option(None, "--scope", help="inference (default), account (export/erase/keys of the own account), manage, admin; repeat or comma-separate."),
                model: list[str] | None = typer.Option(None, "--model", help="Allowed model name or glob; repeat (default: all the owner may use)."),
                expires: str | None = typer.Option(None, "--expires", help="Days (30) or an ISO date (2030-12-31); default: never."),
                course: str | None = typer.Option(None, "--course", help="Bill usage to this course (name or id)."),
                end_user_rpm: str | None = typer.Option(None, "--end-user-requests-per-minute", help="A service account's key (a Moodle site): requests per minute EACH end user (OpenAI `user`) may make."),
                end_user_day: str | None = typer.Option(None, "--end-user-tokens-per-day", help="Tokens per day for each end user of the key."),
                end_user_week: str | None = typer.Option(None, "--end-user-tokens-per-week", help="Tokens per week for each end user of the key."),
                as_json: bool = JSON_OPTION) -> None:
    """Create an API key; the full key is printed once."""
    from flexi.access import admin_ops as ops

    end_user_limits = _limits(end_user_rpm, end_user_day, end_user_week, "--end-user-")
    with database() as s:
        owner = ops.find_user(s, user)
        course_id = ops.find_course(s, course).id if course else None
        created, row = ops.create_api_key(s, owner.id, admins=s.info["settings"].admins, name=name, scopes=_split(scope), models=_split(model),
                                          expires=expires, course_id=course_id)
        view = {**ops.key_view(row), "owner": owner.subject}
        if end_user_limits:
            view["end_user_limits"] = ops.set_quota(s, "enduser", row.id, end_user_limits)
    if as_json:
        emit({**view, "key": created.key, "warning": t("key_once")}, True)
        return
    typer.echo(t("key_created", prefix=view["prefix"], id=view["id"], owner=view["owner"]), err=True)
    typer.echo(t("warning", message=t("key_once")), err=True)
    typer.echo(created.key)


@keys_app.command("revoke")
@handle
def keys_revoke(keys: list[str] = typer.Argument(..., help="Key ids or prefixes (flx_…)."),
                as_json: bool = JSON_OPTION) -> None:
    """Revoke API keys; they stop working at once and their open streams end."""
    from flexi.access import admin_ops as ops

    views = []
    with database() as s:
        for ref in keys:
            views.append(ops.key_view(ops.revoke_api_key(s, ops.find_api_key(s, ref).id)))
    emit(views, as_json, message="\n".join(t("key_revoked", prefix=v["prefix"], id=v["id"]) for v in views))


# --- groups and courses: one set of commands per `Membership` spec ------------------------------------------
def _membership_app(kind: str, plural: str, help_text: str, deleted_note: str, role_help: str | None = None) -> typer.Typer:
    """`flexi groups|courses list|add|rm|members|join|leave` for the spec `ops.KINDS[kind]`; `role_help`
    for kinds whose members have a role (courses: `join --role`). The spec is looked up when a command
    runs, so that `flexi` starts without importing the database layer."""
    app = typer.Typer(help=help_text, no_args_is_help=True)
    roles = role_help is not None
    name_arg = typer.Argument(..., help=f"{kind.capitalize()} name or id.")
    users_arg = typer.Argument(..., help="Users (subject or id).")

    def spec() -> Any:
        from flexi.access.admin_ops import KINDS

        return KINDS[kind]

    @app.command("list", help=f"List {plural}.")
    @handle
    def list_all(search: str | None = typer.Option(None, "--search", "-s"), as_json: bool = JSON_OPTION) -> None:
        from flexi.access.admin_ops import MAX_LIMIT, memberships as ms

        with database() as s:
            views = [ms.view(row, n) for row, n in ms.list_all(spec(), s, search=search, limit=MAX_LIMIT)]
        emit(views, as_json, ["ID", "NAME", "TITLE", "MEMBERS"], [[v["id"], v["name"], v["title"], v["members"]] for v in views])

    @app.command("add", help=f"Add a {kind}.")
    @handle
    def add(name: str = typer.Argument(...), title: str | None = typer.Option(None, "--title"),
            as_json: bool = JSON_OPTION) -> None:
        from flexi.access.admin_ops import memberships as ms

        with database() as s:
            view = ms.view(ms.create(spec(), s, name, title), 0)
        emit(view, as_json, message=t(f"{kind}_added", name=view["name"], id=view["id"]))

    @app.command("rm", help=f"Delete a {kind} ({deleted_note}).")
    @handle
    def rm(name: str = typer.Argument(..., help="Name or id."), as_json: bool = JSON_OPTION) -> None:
        from flexi.access.admin_ops import memberships as ms

        with database() as s:
            view = ms.view(ms.remove(spec(), s, ms.find(spec(), s, name).id))
        emit(view, as_json, message=t(f"{kind}_removed", name=view["name"]))

    @app.command("members", help=f"List a {kind}'s members{f' with their {kind} roles' if roles else ''}.")
    @handle
    def members(name: str = typer.Argument(..., help="Name or id."), as_json: bool = JSON_OPTION) -> None:
        from flexi.access.admin_ops import memberships as ms

        with database() as s:
            views = [ms.member_view(spec(), u, r) for u, r in ms.members(spec(), s, ms.find(spec(), s, name).id)]
        if roles:
            emit(views, as_json, ["ID", "SUBJECT", "NAME", f"{kind.upper()} ROLE"],
                 [[v["id"], v["subject"], v["display_name"], v[f"{kind}_role"]] for v in views])
        else:
            emit(views, as_json, USER_HEADERS, [_user_row(v) for v in views])

    def join(name: str, users: list[str], role: str | None, as_json: bool) -> None:
        from flexi.access.admin_ops import find_user, memberships as ms

        results = []
        with database() as s:
            row = ms.find(spec(), s, name)
            for ref in users:
                user = find_user(s, ref)
                added = ms.put_member(spec(), s, row.id, user.id, role)
                results.append({kind: row.name, "user": user.subject, **({"role": role} if roles else {}), "added": added})
        # joining a course again (re)sets the member's course role, so it is reported as joined
        emit(results, as_json, message="\n".join(t("joined" if r["added"] or roles else "already_member",
                                                    user=r["user"], name=r[kind]) for r in results))

    join_help = f"Add users to a {kind}{f' (or change their {kind} role)' if roles else ''}."
    if roles:
        @app.command("join", help=join_help)
        @handle
        def join_with_role(name: str = name_arg, users: list[str] = users_arg,
                           role: str = typer.Option("student", "--role", help=role_help),
                           as_json: bool = JSON_OPTION) -> None:
            join(name, users, role, as_json)
    else:
        @app.command("join", help=join_help)
        @handle
        def join_plain(name: str = name_arg, users: list[str] = users_arg, as_json: bool = JSON_OPTION) -> None:
            join(name, users, None, as_json)

    @app.command("leave", help=f"Remove users from a {kind}.")
    @handle
    def leave(name: str = name_arg, users: list[str] = users_arg, as_json: bool = JSON_OPTION) -> None:
        from flexi.access.admin_ops import find_user, memberships as ms

        results = []
        with database() as s:
            row = ms.find(spec(), s, name)
            for ref in users:
                user = find_user(s, ref)
                ms.remove_member(spec(), s, row.id, user.id)
                results.append({kind: row.name, "user": user.subject})
        emit(results, as_json, message="\n".join(t("left", user=r["user"], name=r[kind]) for r in results))

    return app


groups_app = _membership_app("group", "groups", "Manage groups (policies can name them).", "its members stay users")
courses_app = _membership_app("course", "courses", "Manage courses (members, course keys and quotas).",
                              "its keys stay, no longer billed to it", role_help="teacher, tutor or student.")


# --- quotas -----------------------------------------------------------------------------------------------------
quotas_app = typer.Typer(help="Requests per minute and tokens per day/week for roles, users, keys and courses.",
                         no_args_is_help=True)

QUOTA_HEADERS = ["KIND", "SUBJECT", "REQUESTS/MIN", "TOKENS/DAY", "TOKENS/WEEK"]


def _limit_text(value: int | None) -> str:
    return "-" if value is None else str(value)


def _subject(session: Any, role: str | None, user: str | None, key: str | None, course: str | None,
             end_users_of: str | None = None) -> tuple[str, Any]:
    from flexi.access import admin_ops as ops

    given = [(k, v) for k, v in (("role", role), ("user", user), ("key", key), ("course", course),
                                 ("enduser", end_users_of)) if v is not None]
    if len(given) != 1:
        raise CommandError(t("one_subject"))
    kind, ref = given[0]
    if kind == "user":
        return kind, ops.find_user(session, ref).id
    if kind in ("key", "enduser"):
        return kind, ops.find_api_key(session, ref).id
    if kind == "course":
        return kind, ops.find_course(session, ref).id
    return kind, ref


ROLE_OPT = typer.Option(None, "--role", help="Default limits for everyone with this role.")
USER_OPT = typer.Option(None, "--user", help="A user (subject or id).")
KEY_OPT = typer.Option(None, "--key", help="An API key (id or prefix).")
COURSE_OPT = typer.Option(None, "--course", help="A course (name or id).")
END_USERS_OPT = typer.Option(None, "--end-users-of", help="EACH end user (OpenAI `user`) of this service account's API key (id or prefix), e.g. every student of a Moodle site.")


def _limits(rpm: str | None, day: str | None, week: str | None, prefix: str = "--") -> dict[str, int | None]:
    """The limits given as options (a number, or 'none' = no limit); absent ones are left out."""
    values = {}
    for name, raw in (("requests_per_minute", rpm), ("tokens_per_day", day), ("tokens_per_week", week)):
        given, value = _number(prefix + name.replace("_", "-"), raw)
        if given:
            values[name] = value
    return values


def _role_defaults() -> dict[str, dict[str, int | None]]:
    """FLEXI_DEFAULT_ROLE_QUOTAS: shown for roles an administrator has not set."""
    from flexi.config import load_settings

    return load_settings().default_role_quotas


@quotas_app.command("list")
@handle
def quotas_list(kind: str | None = typer.Option(None, "--kind", help="role, user, key, course or enduser."),
                as_json: bool = JSON_OPTION) -> None:
    """List all quotas."""
    from flexi.access import admin_ops as ops

    with database() as s:
        views = ops.list_quotas(s, kind, _role_defaults())
    emit(views, as_json, QUOTA_HEADERS, [[v["kind"], f"{v['label'] or v['subject']}{' (default)' if v.get('default') else ''}", *(_limit_text(v[n]) for n in ops.QUOTA_FIELDS)]
                                         for v in views])


@quotas_app.command("set")
@handle
def quotas_set(role: str | None = ROLE_OPT, user: str | None = USER_OPT, key: str | None = KEY_OPT,
               course: str | None = COURSE_OPT, end_users_of: str | None = END_USERS_OPT,
               requests_per_minute: str | None = typer.Option(None, "--requests-per-minute", help="Number or 'none'."),
               tokens_per_day: str | None = typer.Option(None, "--tokens-per-day", help="Number or 'none'."),
               tokens_per_week: str | None = typer.Option(None, "--tokens-per-week", help="Number or 'none'."),
               as_json: bool = JSON_OPTION) -> None:
    """Set limits, e.g. --role student --tokens-per-day 50000 (others stay as they are)."""
    from flexi.access import admin_ops as ops

    values = _limits(requests_per_minute, tokens_per_day, tokens_per_week)
    if not values:
        raise CommandError(t("nothing_to_set"))
    with database() as s:
        kind, subject = _subject(s, role, user, key, course, end_users_of)
        view = ops.set_quota(s, kind, subject, values, _role_defaults())
    emit(view, as_json, message=t("quota_set", kind=view["kind"], label=view["label"]))


@quotas_app.command("clear")
@handle
def quotas_clear(role: str | None = ROLE_OPT, user: str | None = USER_OPT, key: str | None = KEY_OPT,
                 course: str | None = COURSE_OPT, end_users_of: str | None = END_USERS_OPT,
                 as_json: bool = JSON_OPTION) -> None:
    """Remove the limits of one role, user, key or course (or those of each end user of a key)."""
    from flexi.access import admin_ops as ops

    with database() as s:
        kind, subject = _subject(s, role, user, key, course, end_users_of)
        ops.clear_quota(s, kind, subject)
    emit({"kind": kind, "subject": subject}, as_json,
         message=t("quota_cleared", kind=kind, label=role or user or key or course or end_users_of))


@quotas_app.command("show")
@handle
def quotas_show(user: str | None = USER_OPT, key: str | None = KEY_OPT, course: str | None = COURSE_OPT,
                as_json: bool = JSON_OPTION) -> None:
    """Limits in force and use in the current minute, day and week."""
    from flexi.access import admin_ops as ops

    with database() as s:
        kind, subject = _subject(s, None, user, key, course)
        view = ops.quota_usage(s, kind, subject, _role_defaults())
    emit(view, as_json, ["LIMIT", "USED", "OF", "FROM"],
         [[n, view["used"][n], _limit_text(view["limits"][n]), view["limits_from"] or "-"] for n in ops.QUOTA_FIELDS])


# --- model policies -------------------------------------------------------------------------------------------------
policies_app = typer.Typer(help="Which roles and groups may use which models, with context/output limits.",
                           no_args_is_help=True)


def _list_option(values: Sequence[str] | None) -> tuple[bool, list[str] | None]:
    """(given, value): '*' = anyone (no restriction), '' or '-' = nobody, else a comma list."""
    if values is None:
        return False, None
    parts = _split(values) or []
    if parts == ["*"]:
        return True, None
    return True, [p for p in parts if p != "-"]


@policies_app.command("list")
@handle
def policies_list(search: str | None = typer.Option(None, "--search", "-s"), as_json: bool = JSON_OPTION) -> None:
    """List model policies."""
    from flexi.access import admin_ops as ops

    with database() as s:
        views = [ops.policy_view(p) for p in ops.list_policies(s, search=search)]
    emit(views, as_json, ["ID", "PATTERN", "ROLES", "GROUPS", "MAX CONTEXT", "MAX OUTPUT"],
         [[v["id"], v["pattern"], *_who(v["allowed_roles"], v["allowed_groups"]), _limit_text(v["max_context"]),
           _limit_text(v["max_output"])] for v in views])


def _who(roles: list[str] | None, groups: list[str] | None) -> tuple[str, str]:
    """A user is admitted if their role or one of their groups is listed; neither list = everyone."""
    if roles is None and groups is None:
        return "*", "*"
    return ("" if roles is None else ",".join(roles) or "-"), ("" if groups is None else ",".join(groups) or "-")


@policies_app.command("set")
@handle
def policies_set(pattern: str = typer.Argument(..., help="Model name or glob, e.g. 'llama3*' or smollm2:135m."),
                 roles: list[str] | None = typer.Option(None, "--roles", help="Allowed roles, comma-separated; '*' = any, '-' = none."),
                 groups: list[str] | None = typer.Option(None, "--groups", help="Allowed groups, comma-separated; '*' = any, '-' = none."),
                 max_context: str | None = typer.Option(None, "--max-context", help="Tokens, or 'none'."),
                 max_output: str | None = typer.Option(None, "--max-output", help="Tokens, or 'none'."),
                 as_json: bool = JSON_OPTION) -> None:
    """Create or change the policy for a model pattern (options not given stay as they are)."""
    from flexi.access import admin_ops as ops

    changes: dict[str, Any] = {}
    for name, raw in (("allowed_roles", roles), ("allowed_groups", groups)):
        given, value = _list_option(raw)
        if given:
            changes[name] = value
    for name, option, raw_number in (("max_context", "--max-context", max_context), ("max_output", "--max-output", max_output)):
        given, number = _number(option, raw_number)
        if given:
            changes[name] = number
    with database() as s:
        row, created = ops.set_policy(s, pattern, changes)
        view = ops.policy_view(row)
    emit(view, as_json, message=t("policy_created" if created else "policy_changed", pattern=view["pattern"], id=view["id"]))


@policies_app.command("rm")
@handle
def policies_rm(pattern: str = typer.Argument(..., help="Pattern or id."), as_json: bool = JSON_OPTION) -> None:
    """Delete the policy for a pattern."""
    from flexi.access import admin_ops as ops

    with database() as s:
        view = ops.policy_view(ops.delete_policy(s, ops.find_policy(s, pattern).id))
    emit(view, as_json, message=t("policy_removed", pattern=view["pattern"]))


SUB_APPS: list[tuple[typer.Typer, str]] = [
    (users_app, "users"), (keys_app, "keys"), (groups_app, "groups"), (courses_app, "courses"),
    (quotas_app, "quotas"), (policies_app, "policies"),
]
