"""Tables of Flexi's state database: people, keys, policies, quotas, usage.

Why it looks like this:
- Small and explicit: one class per table, typed `Mapped[...]` columns, no
  behaviour. Rules (who may do what) live in the auth/usage layers, not here.
- Closed vocabularies (roles, quota subjects) are strings guarded by CHECK
  constraints rather than database ENUM types, so a later migration can add a
  value with one constraint change on both SQLite and PostgreSQL.
- Every constraint has a deterministic name (`NAMING`), which Alembic needs to
  alter or drop it later, and SQLite's batch mode needs to copy it.
- Timestamps are timezone-aware UTC in Python (`UTCDateTime`): `timestamptz`
  on PostgreSQL, UTC text on SQLite, never a naive local time.
- `UsageRecord` holds numbers and identifiers only: prompts and responses are
  personal data and are not stored (issue 4, data protection).
- The schema itself is created by the Alembic migrations in
  `flexi/db/migrations`, never by `metadata.create_all`; a test checks that
  the models and the migrations agree.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
    true,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from flexi.i18n import LOCALES  # the languages of users' messages; a new one needs a migration too

ROLES = ("admin", "teacher", "student", "researcher", "service")
COURSE_ROLES = ("teacher", "tutor", "student")
QUOTA_SUBJECTS = ("user", "key", "course", "enduser")  # enduser: each end user of the key `subject_id`

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

NOW = text("CURRENT_TIMESTAMP")  # server-side default, UTC on both databases


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso_z(value: datetime) -> str:
    """A UTC timestamp as every Flexi API writes it: ISO 8601 with `Z`."""
    return value.isoformat().replace("+00:00", "Z")


def _in(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{v}'" for v in values)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out; naive values are refused.

    SQLite has no time zones, so the value is stored as UTC without an offset
    and marked UTC again when read.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: Flexi stores timezone-aware UTC timestamps only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime(), dict[str, Any]: JSON, list[str]: JSON}


class User(Base):
    """A person or service. `subject` is the external identity (OIDC `sub`, LTI
    user id); `pseudonym` is its keyed hash, used wherever the identity must
    not appear (usage records, exports for research)."""

    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint(f"role IN ({_in(ROLES)})", name="role"),
        CheckConstraint(f"locale IN ({_in(LOCALES)})", name="locale"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    subject: Mapped[str] = mapped_column(String(255), unique=True)
    pseudonym: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    display_name: Mapped[str | None] = mapped_column(String(255))
    email: Mapped[str | None] = mapped_column(String(320))
    role: Mapped[str] = mapped_column(String(16), default="student")
    locale: Mapped[str] = mapped_column(String(2), default="de", server_default="de")
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=NOW)
    disabled_at: Mapped[datetime | None]
    password_hash: Mapped[str | None] = mapped_column(String(255))  # local accounts only (scrypt, see flexi.access.passwords)

    api_keys: Mapped[list[ApiKey]] = relationship(back_populates="owner", passive_deletes=True)


class Group(Base):
    """A set of users (e.g. from an SSO group claim) that policies can name."""

    __tablename__ = "groups"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    title: Mapped[str | None] = mapped_column(String(255))


class Course(Base):
    """A course: members with a course role, its own quota and usage."""

    __tablename__ = "courses"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    title: Mapped[str | None] = mapped_column(String(255))
    # what prompt templates may take from their course (`course` parameters, flexi/prompt/template_params.py)
    description: Mapped[str] = mapped_column(Text, default="", server_default="")
    learning_objectives: Mapped[str] = mapped_column(Text, default="", server_default="")


class GroupMember(Base):
    __tablename__ = "group_members"

    group_id: Mapped[int] = mapped_column(ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True)


class CourseMember(Base):
    __tablename__ = "course_members"
    __table_args__ = (CheckConstraint(f"role IN ({_in(COURSE_ROLES)})", name="role"),)

    course_id: Mapped[int] = mapped_column(ForeignKey("courses.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True)
    role: Mapped[str] = mapped_column(String(16), default="student")


class ApiKey(Base):
    """An API key. Only `prefix` (shown in lists and logs) and `secret_hash` are
    stored; the full key is shown once at creation (see `flexi.db.apikeys`).
    `scopes` and `models` are JSON lists; assign a new list to change them
    (in-place edits are not tracked). `models` None = whatever the owner may use."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=NOW)
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]
    scopes: Mapped[list[str]] = mapped_column(default=list, server_default="[]")
    models: Mapped[list[str] | None]
    course_id: Mapped[int | None] = mapped_column(ForeignKey("courses.id", ondelete="SET NULL"), index=True)  # a course's key: usage and quota count for that course

    owner: Mapped[User] = relationship(back_populates="api_keys")


class ModelPolicy(Base):
    """Who may use which models. `pattern` is a model name glob (`llama3*:*`);
    None in a list or limit = no restriction from that field."""

    __tablename__ = "model_policies"

    id: Mapped[int] = mapped_column(primary_key=True)
    pattern: Mapped[str] = mapped_column(String(255), unique=True)
    allowed_roles: Mapped[list[str] | None]
    allowed_groups: Mapped[list[str] | None]
    max_context: Mapped[int | None]
    max_output: Mapped[int | None]


class Quota(Base):
    """Limits for one user, key or course; None = unlimited."""

    __tablename__ = "quotas"
    __table_args__ = (
        CheckConstraint(f"subject_kind IN ({_in(QUOTA_SUBJECTS)})", name="subject_kind"),
        UniqueConstraint("subject_kind", "subject_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    subject_kind: Mapped[str] = mapped_column(String(8))
    subject_id: Mapped[int]
    requests_per_minute: Mapped[int | None]
    tokens_per_day: Mapped[int | None]
    tokens_per_week: Mapped[int | None]


class RoleQuota(Base):
    """Default limits for everyone with a role, used where a user has no own quota row."""

    __tablename__ = "role_quotas"
    __table_args__ = (CheckConstraint(f"role IN ({_in(ROLES)})", name="role"),)

    role: Mapped[str] = mapped_column(String(16), primary_key=True)
    requests_per_minute: Mapped[int | None]
    tokens_per_day: Mapped[int | None]
    tokens_per_week: Mapped[int | None]


class QuotaCounter(Base):
    """What one subject used in one window (`minute`, `day`, `week` starting at
    `window_start`, UTC). Changed only by conditional atomic UPDATEs, so
    concurrent requests and several server replicas cannot overspend.
    `end_user`: for kind `enduser` the pseudonym of one end user of the key
    `subject_id` (an application's own user id, keyed hash), else empty."""

    __tablename__ = "quota_counters"
    __table_args__ = (CheckConstraint(f"subject_kind IN ({_in(QUOTA_SUBJECTS)})", name="subject_kind"),)

    subject_kind: Mapped[str] = mapped_column(String(8), primary_key=True)
    subject_id: Mapped[int] = mapped_column(primary_key=True)
    window: Mapped[str] = mapped_column(String(8), primary_key=True)
    window_start: Mapped[datetime] = mapped_column(primary_key=True, index=True)
    end_user: Mapped[str] = mapped_column(String(64), primary_key=True, default="", server_default="")
    used: Mapped[int] = mapped_column(BigInteger, default=0)


class LoginSession(Base):
    """A browser sign-in. Only the SHA-256 of the cookie's token is stored, so a
    database dump cannot be replayed as a cookie; deleting the row signs out."""

    __tablename__ = "login_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=NOW)
    expires_at: Mapped[datetime]
    method: Mapped[str] = mapped_column(String(16), default="oidc")  # oidc | password


class ContentRecord(Base):
    """Prompt and response text, stored ONLY when an admin enabled content
    logging for a named purpose with a retention period (off by default)."""

    __tablename__ = "content_records"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, server_default=NOW, index=True)
    user_pseudonym: Mapped[str] = mapped_column(String(64), index=True)
    purpose: Mapped[str] = mapped_column(String(255))
    model: Mapped[str] = mapped_column(String(255))
    endpoint: Mapped[str] = mapped_column(String(64))
    prompt: Mapped[str] = mapped_column(Text)
    response: Mapped[str] = mapped_column(Text)


class UsageRecord(Base):
    """One record per request. Identifies the user only by pseudonym and holds no
    prompt or response text. Keys and courses may be deleted later; their records
    stay (ids set to NULL) for the totals.
    `assistant_id` marks chats through a course assistant (billed to its course),
    `template_id` and `template_version` runs of a prompt template (billed to its course).
    `status`: ok | cancelled | error | rejected, and for a generation still in
    flight "running" (its start journaled, flexi.access.usage_journal) or
    "interrupted" (its replica died or lost the database before its end).
    `request_id` (unique, NULL for requests that were never journaled) joins a
    generation's start to its end; `replica` names the replica that ran it.
    `at` is the end of the request, or its start while it is running."""

    __tablename__ = "usage_records"
    __table_args__ = (  # the sweep's query: the few rows still running, by age
        Index("ix_usage_records_running", "at", sqlite_where=text("status = 'running'"),
              postgresql_where=text("status = 'running'")),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, server_default=NOW, index=True)
    user_pseudonym: Mapped[str] = mapped_column(String(64), index=True)
    key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id", ondelete="SET NULL"), index=True)
    course_id: Mapped[int | None] = mapped_column(ForeignKey("courses.id", ondelete="SET NULL"), index=True)
    model: Mapped[str] = mapped_column(String(255))
    endpoint: Mapped[str] = mapped_column(String(64))
    prompt_tokens: Mapped[int] = mapped_column(default=0)
    completion_tokens: Mapped[int] = mapped_column(default=0)
    queue_ms: Mapped[int] = mapped_column(default=0)
    generation_ms: Mapped[int] = mapped_column(default=0)
    status: Mapped[str] = mapped_column(String(16), default="ok")
    assistant_id: Mapped[int | None] = mapped_column(ForeignKey("assistants.id", ondelete="SET NULL"), index=True)  # chats through a course assistant
    template_id: Mapped[int | None] = mapped_column(ForeignKey("prompt_templates.id", ondelete="SET NULL"), index=True)  # runs of a prompt template
    template_version: Mapped[int | None]  # which version of it ran (kept when the template is deleted)
    request_id: Mapped[str | None] = mapped_column(String(96), index=True, unique=True)
    replica: Mapped[str | None] = mapped_column(String(128))
    end_user: Mapped[str | None] = mapped_column(String(64), index=True)  # pseudonym of an application's end user (OpenAI `user` of a service key)


class TermsAcceptance(Base):
    """A user accepted terms-of-use version `version` at `accepted_at`."""

    __tablename__ = "terms_acceptances"
    __table_args__ = (UniqueConstraint("user_id", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    version: Mapped[str] = mapped_column(String(32))
    accepted_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=NOW)


AUDIENCES = ("course", "campus")
CHAT_ROLES = ("user", "assistant", "system")
DOCUMENT_STATES = ("queued", "processing", "ready", "failed")


class Assistant(Base):
    """A course assistant made by a teacher: a model with a system prompt, options
    and a welcome text, shared by link (`slug`, random and unguessable).
    `audience`: course = the course's members only, campus = anyone signed in
    who has the link. Usage of its chats is billed to `course_id` and recorded
    with `usage_records.assistant_id`. The owner may leave (SET NULL): the
    assistant belongs to the course. `options` is a JSON dict of validated model
    options (see flexi.campus.assistants); assign a new dict to change it.

    Its course documents (retrieval) are `assistant_documents` rows hanging off
    `assistants.id` (ON DELETE CASCADE), their chunks and vectors `document_chunks`."""

    __tablename__ = "assistants"
    __table_args__ = (CheckConstraint(f"audience IN ({_in(AUDIENCES)})", name="audience"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(32), unique=True)
    course_id: Mapped[int] = mapped_column(ForeignKey("courses.id", ondelete="CASCADE"), index=True)
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(Text, default="", server_default="")
    model: Mapped[str] = mapped_column(String(255))
    system_prompt: Mapped[str] = mapped_column(Text, default="", server_default="")
    welcome_message: Mapped[str] = mapped_column(Text, default="", server_default="")
    example_questions: Mapped[list[str]] = mapped_column(default=list, server_default="[]")
    options: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default="{}")
    audience: Mapped[str] = mapped_column(String(8), default="course", server_default="course")
    show_system_prompt: Mapped[bool] = mapped_column(default=False, server_default=false())
    disabled: Mapped[bool] = mapped_column(default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=NOW)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=NOW)


class PromptTemplate(Base):
    """A prompt template (issue 15, "Caipi"): instructions with typed parameters that a course's
    teachers keep and others run by name (`slug`, also the model name `template/<slug>`). Its content
    lives in versions: every change adds one (`prompt_template_versions`) and moves `version` to it, so
    a run names exactly what ran and old versions stay readable. Deleting it deletes its versions;
    usage rows keep their numbers and the version (template_id SET NULL)."""

    __tablename__ = "prompt_templates"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(48), unique=True)
    course_id: Mapped[int] = mapped_column(ForeignKey("courses.id", ondelete="CASCADE"), index=True)
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    version: Mapped[int] = mapped_column(default=1, server_default="1")  # the current version
    disabled: Mapped[bool] = mapped_column(default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=NOW)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=NOW)


class PromptTemplateVersion(Base):
    """One version of a template, never changed once written. `parameters` is the validated list of
    parameter specs, `options` validated sampling options, `roles` the user roles and `courses` the
    course ids whose members may run it (besides the course's teachers and administrators)."""

    __tablename__ = "prompt_template_versions"

    template_id: Mapped[int] = mapped_column(ForeignKey("prompt_templates.id", ondelete="CASCADE"), primary_key=True)
    version: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(Text, default="", server_default="")
    instructions: Mapped[str] = mapped_column(Text)
    parameters: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list, server_default="[]")
    model: Mapped[str] = mapped_column(String(255))
    options: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default="{}")
    roles: Mapped[list[str]] = mapped_column(default=list, server_default="[]")
    courses: Mapped[list[int]] = mapped_column(JSON, default=list, server_default="[]")
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=NOW)


class Conversation(Base):
    """A chat kept on the server for its user (only with FLEXI_CHAT_HISTORY=server).
    Deleted with the user, and by the retention purge when not updated for
    FLEXI_CHAT_RETENTION_DAYS (`updated_at` is indexed for that)."""

    __tablename__ = "conversations"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    title: Mapped[str] = mapped_column(String(200), default="")
    model: Mapped[str] = mapped_column(String(255), default="")
    assistant_id: Mapped[int | None] = mapped_column(ForeignKey("assistants.id", ondelete="SET NULL"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=NOW)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=NOW, index=True)


class ChatMessage(Base):
    """One message of a server-side conversation, in order (`position` 0, 1, …)."""

    __tablename__ = "chat_messages"
    __table_args__ = (CheckConstraint(f"role IN ({_in(CHAT_ROLES)})", name="role"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(16))
    content: Mapped[str] = mapped_column(Text)
    citations: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)  # a course assistant's sources (issue 13)
    position: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=NOW)


class AssistantDocument(Base):
    """A course document of an assistant (issue 13): what a teacher uploaded or named by URL, and
    how far it got. One name per assistant: uploading a changed file with the same name replaces the
    row's chunks. `sha256` of the uploaded bytes tells an unchanged re-upload apart. Deleting the
    assistant deletes its documents and (through them) their chunks."""

    __tablename__ = "assistant_documents"
    __table_args__ = (
        CheckConstraint(f"status IN ({_in(DOCUMENT_STATES)})", name="status"),
        UniqueConstraint("assistant_id", "name"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    assistant_id: Mapped[int] = mapped_column(ForeignKey("assistants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), default=0, server_default="0")
    media_type: Mapped[str] = mapped_column(String(100), default="", server_default="")
    source_url: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(12), default="queued", server_default="queued")
    error: Mapped[str | None] = mapped_column(Text)
    pages: Mapped[int] = mapped_column(default=0, server_default="0")
    chunks: Mapped[int] = mapped_column(default=0, server_default="0")
    uploaded_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=NOW)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=NOW)


class DocumentChunk(Base):
    """One retrievable passage of a document: its text, where it stands (page or slide, heading path)
    and its embedding (float32 little-endian bytes of `embedding_model`). The indexes in memory are
    rebuilt from these rows, so the database is the one place a course's material lives."""

    __tablename__ = "document_chunks"
    __table_args__ = (UniqueConstraint("document_id", "ordinal"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    document_id: Mapped[int] = mapped_column(ForeignKey("assistant_documents.id", ondelete="CASCADE"), index=True)
    ordinal: Mapped[int]
    page: Mapped[int | None]
    heading: Mapped[str] = mapped_column(Text, default="", server_default="")
    text: Mapped[str] = mapped_column(Text)
    embedding: Mapped[bytes | None] = mapped_column(LargeBinary)
    embedding_model: Mapped[str | None] = mapped_column(String(255))



class EnergyHour(Base):
    """Energy and busy time of one hour (issue 14), downsampled by the sampler of each replica
    (flexi.energy): joules of one device attributed to one model and course (model "" = idle, course 0 =
    none), or, with device "", the busy seconds of that model and course. Each replica writes only its own
    rows (`replica`), so reports add them up without any coordination; rows beyond the retention are
    deleted. `estimated`: the joules come from configured watts, not from a meter. No foreign key on the
    course: a deleted course's energy stays in the totals under its id."""

    __tablename__ = "energy_hours"

    hour: Mapped[datetime] = mapped_column(primary_key=True, index=True)
    replica: Mapped[str] = mapped_column(String(128), primary_key=True)
    device: Mapped[str] = mapped_column(String(64), primary_key=True)
    model: Mapped[str] = mapped_column(String(255), primary_key=True)
    course_id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    joules: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    busy_seconds: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    estimated: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class EnergyPeak(Base):
    """The most requests one replica ran at once in an hour (issue 14); summed over replicas it is an
    upper bound of the service's peak."""

    __tablename__ = "energy_peaks"

    hour: Mapped[datetime] = mapped_column(primary_key=True, index=True)
    replica: Mapped[str] = mapped_column(String(128), primary_key=True)
    peak: Mapped[int] = mapped_column(default=0, server_default="0")
class RemoteBackend(Base):
    """A remote engine an administrator added at run time (`/admin/backends`, `flexi backend add`), next to
    the `[[backends]]` of config.toml. The columns are `flexi.config.BackendConfig`'s fields, which validate
    a row before it is stored and again when it is read. `api_key` is stored as given (the server sends it
    as a bearer token, so it cannot be hashed); no route, CLI output or log ever shows it."""

    __tablename__ = "remote_backends"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    url: Mapped[str] = mapped_column(Text)
    models: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default="{}")
    api_key: Mapped[str | None] = mapped_column(Text)
    max_concurrency: Mapped[int] = mapped_column(default=8, server_default="8")
    external: Mapped[bool] = mapped_column(default=False, server_default=false())
    enabled: Mapped[bool | None]
    context_length: Mapped[int | None]
    timeout: Mapped[float] = mapped_column(Float, default=300.0, server_default="300")
    capabilities: Mapped[list[str]] = mapped_column(JSON, default=lambda: ["completion", "tools"],
                                                    server_default='["completion", "tools"]')
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=NOW)


class ModelAlias(Base):
    """A model name an administrator maps to a real model at run time (`/admin/aliases`, `flexi alias add`),
    next to the `[aliases]` of config.toml: `gpt-4o` → `llama3.3`, for Moodle plugins with fixed model lists.
    It follows its target (resolved on every request, unlike `flexi cp`); the target's policy applies."""

    __tablename__ = "model_aliases"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)  # canonical (lower-case, with tag)
    display: Mapped[str] = mapped_column(String(200))  # as the admin wrote it: what model lists show
    target: Mapped[str] = mapped_column(String(200))
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=NOW)


class ModelReport(Base):
    """A measurement of one model (`flexi bench|eval|safety|quant-report --save`): the tool's per-model result
    (`report`), a small `summary` the model picker and catalogue show, and the model file's `digest`, so a
    model replaced under the same name does not inherit its predecessor's figures."""

    __tablename__ = "model_reports"
    __table_args__ = (Index("ix_model_reports_model_kind", "model", "kind", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    model: Mapped[str] = mapped_column(String(200))  # canonical name (lower-case, with tag)
    digest: Mapped[str | None] = mapped_column(String(80))  # sha256 of the local file; None for remote models
    kind: Mapped[str] = mapped_column(String(16))  # bench | eval | safety | quant
    tool: Mapped[str] = mapped_column(String(64), default="", server_default="")  # e.g. "flexi eval 0.1.0"
    summary: Mapped[dict[str, Any]] = mapped_column(JSON)
    report: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=NOW)


class ConfigVersion(Base):
    """A counter per kind of run-time configuration ("backends"), raised in the transaction of every change:
    each replica reads this one row every few seconds and reloads only when it moved."""

    __tablename__ = "config_versions"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), default=0, server_default="0")

# Columns and indexes of `document_chunks` that exist on PostgreSQL only, for the campus-scale search index
# (migration 0006, flexi.rag.pgindex): a pgvector column and the analysed terms with their GIN index. They are
# written and read with SQL by that index, not through these models, so the model/migration comparison
# leaves them out.
SEARCH_ENGINE_OBJECTS = frozenset({"embedding_vec", "search_terms", "search_length", "ix_document_chunks_search_terms"})


def include_object(obj: object, name: str | None, type_: str, reflected: bool, compare_to: object) -> bool:
    """Alembic's `include_object` hook: everything but the search index's PostgreSQL-only objects."""
    return not (type_ in ("column", "index") and name in SEARCH_ENGINE_OBJECTS)


# --- LTI 1.3 (issue 15): Flexi as a tool inside Moodle and other platforms (flexi.lti, flexi.campus.lti) ---


class LtiPlatform(Base):
    """A platform (a Moodle site) that may launch Flexi: its issuer and the client id it gave Flexi, where to
    send the browser (auth_url), and where its signing keys are (jwks_url). `deployment_ids`: the
    deployments Flexi accepts (a JSON list). `trust_admins`: its Administrator role makes a Flexi admin
    (off: an Administrator is a teacher of the launched course only)."""

    __tablename__ = "lti_platforms"
    __table_args__ = (UniqueConstraint("issuer", "client_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(255), default="", server_default="")
    issuer: Mapped[str] = mapped_column(String(255))
    client_id: Mapped[str] = mapped_column(String(255))
    deployment_ids: Mapped[list[str]] = mapped_column(JSON, default=list, server_default="[]")
    auth_url: Mapped[str] = mapped_column(Text)
    token_url: Mapped[str] = mapped_column(Text, default="", server_default="")
    jwks_url: Mapped[str] = mapped_column(Text)
    trust_admins: Mapped[bool] = mapped_column(default=False, server_default=false())
    registered_by: Mapped[str] = mapped_column(String(16), default="admin", server_default="admin")  # admin | dynamic
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=NOW)


class LtiLogin(Base):
    """A started LTI login (OIDC third-party initiated login): the `state` sent to the platform (its SHA-256),
    the nonce, and the SHA-256 of the browser's state cookie. Deleted when the launch uses it (single use on
    every replica), or when it expires."""

    __tablename__ = "lti_logins"

    state_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    nonce: Mapped[str] = mapped_column(String(64))
    binding: Mapped[str] = mapped_column(String(64))
    platform_id: Mapped[int] = mapped_column(ForeignKey("lti_platforms.id", ondelete="CASCADE"), index=True)
    expires_at: Mapped[datetime] = mapped_column(index=True)


class LtiLink(Base):
    """A resource link (an activity placed in a platform's course) and the assistant it opens."""

    __tablename__ = "lti_links"
    __table_args__ = (UniqueConstraint("platform_id", "resource_link_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    platform_id: Mapped[int] = mapped_column(ForeignKey("lti_platforms.id", ondelete="CASCADE"))
    resource_link_id: Mapped[str] = mapped_column(String(255))
    assistant_id: Mapped[int] = mapped_column(ForeignKey("assistants.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=NOW)


class LtiDeepLink(Base):
    """An open deep-linking request: a teacher is choosing an assistant. The ticket (its SHA-256 here) is in the
    choice form and is good once; the answer goes to `return_url`, echoing the platform's `data`."""

    __tablename__ = "lti_deep_links"

    ticket_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    platform_id: Mapped[int] = mapped_column(ForeignKey("lti_platforms.id", ondelete="CASCADE"))
    deployment_id: Mapped[str] = mapped_column(String(255))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    course_id: Mapped[int] = mapped_column(ForeignKey("courses.id", ondelete="CASCADE"))
    return_url: Mapped[str] = mapped_column(Text)
    data: Mapped[str | None] = mapped_column(Text)
    expires_at: Mapped[datetime] = mapped_column(index=True)


class LtiKey(Base):
    """Flexi's own RSA signing keys (deep-linking responses), published at /lti/jwks. The newest active key
    signs; older ones stay published until removed, so platforms can still check what they signed."""

    __tablename__ = "lti_keys"

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    private_pem: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=NOW)
    active: Mapped[bool] = mapped_column(default=True, server_default=true())


class LtiRegistrationToken(Base):
    """A one-time permission for dynamic registration: an administrator makes the registration URL
    (`/lti/register?token=…`), a platform uses it once."""

    __tablename__ = "lti_registration_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime]
