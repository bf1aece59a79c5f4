"""Administration as plain database operations, shared by the REST API and the CLI.

Why one package: `/admin/…`, `/me/keys` and `flexi users|keys|groups|courses|quotas|policies` must
apply the same rules (validation, the last admin, scopes a key may carry), so they all call these
functions and only translate input and output. Every function takes a `Session`, flushes, and leaves
the commit to the caller, so a REST request or a CLI command is one transaction.

One module per entity: `users`, `keys`, `memberships` (groups and courses, one code path), `quotas`,
`policies`, `backends` (remote engines added at run time), `aliases` (model aliases), `model_reports` (measurements stored with a model); `checks` holds the input checks they share and `errors` the `AdminError` they raise. Each
entity's `*_view` turns rows into JSON-ready dicts and never includes secrets (no password or key
hashes; keys by prefix only). The names below are the package's API: callers write `ops.create_user`
after `from flexi.access import admin_ops as ops`.
"""

from __future__ import annotations

from flexi.access.admin_ops.aliases import (
    AliasEntry,
    alias_key,
    alias_view,
    aliases_version,
    delete_alias,
    set_alias,
    stored_aliases,
)
from flexi.access.admin_ops.backends import (
    add_backend,
    backend_view,
    backends_version,
    delete_backend,
    stored_backends,
)
from flexi.access.admin_ops.checks import MAX_ID, MAX_LIMIT, MAX_OFFSET, clean_text, filter_text, valid_id
from flexi.access.admin_ops.errors import AdminError
from flexi.access.admin_ops.model_reports import (
    KINDS as REPORT_KINDS,
)
from flexi.access.admin_ops.model_reports import (
    StoredReport,
    delete_model_report,
    get_model_report,
    latest_model_reports,
    list_model_reports,
    save_model_report,
    summarize,
)
from flexi.access.admin_ops.keys import (
    ADMIN_SCOPES,
    DEFAULT_SCOPES,
    MAX_KEY_DAYS,
    MAX_KEY_MODELS,
    MAX_OWN_KEYS,
    SCOPES,
    active_key_count,
    create_api_key,
    expiry_from,
    find_api_key,
    get_api_key,
    key_state,
    key_view,
    list_api_keys,
    model_patterns,
    parse_expiry,
    revoke_api_key,
)
from flexi.access.admin_ops.memberships import (
    COURSES,
    GROUPS,
    KINDS,
    Membership,
    add_group_member,
    course_members,
    course_view,
    create_course,
    create_group,
    delete_course,
    delete_group,
    find_course,
    find_group,
    get_course,
    get_group,
    group_members,
    group_view,
    list_courses,
    list_groups,
    remove_course_member,
    remove_group_member,
    set_course_member,
)
from flexi.access.admin_ops.policies import (
    MAX_LIST_ITEMS,
    create_policy,
    delete_policy,
    find_policy,
    get_policy,
    list_policies,
    policy_view,
    set_policy,
    update_policy,
)
from flexi.access.admin_ops.quotas import (
    QUOTA_FIELDS,
    QUOTA_KINDS,
    clear_quota,
    list_quotas,
    quota_usage,
    quota_view,
    set_quota,
)
from flexi.access.admin_ops.users import (
    UserChange,
    create_user,
    delete_user,
    find_user,
    get_user,
    list_users,
    set_password,
    update_user,
    user_view,
)

__all__ = [
    "ADMIN_SCOPES", "COURSES", "DEFAULT_SCOPES", "GROUPS", "KINDS", "MAX_ID", "MAX_KEY_DAYS", "MAX_KEY_MODELS", "MAX_LIMIT",
    "MAX_LIST_ITEMS", "MAX_OFFSET", "MAX_OWN_KEYS", "QUOTA_FIELDS", "QUOTA_KINDS", "SCOPES",
    "AdminError", "AliasEntry", "Membership", "UserChange",
    "REPORT_KINDS", "StoredReport", "delete_model_report", "get_model_report", "latest_model_reports",
    "list_model_reports", "save_model_report", "summarize",
    "alias_key", "alias_view", "aliases_version", "delete_alias", "set_alias", "stored_aliases",
    "active_key_count", "add_backend", "add_group_member", "backend_view", "backends_version", "delete_backend",
    "stored_backends", "clean_text", "clear_quota", "course_members", "course_view",
    "create_api_key", "create_course", "create_group", "create_policy", "create_user", "delete_course",
    "delete_group", "delete_policy", "delete_user", "expiry_from", "filter_text", "find_api_key", "find_course",
    "find_group", "find_policy", "find_user", "get_api_key", "get_course", "get_group", "get_policy", "get_user",
    "group_members", "group_view", "key_state", "key_view", "list_api_keys", "list_courses", "list_groups",
    "list_policies", "list_quotas", "list_users", "model_patterns", "parse_expiry", "policy_view", "quota_usage",
    "quota_view", "remove_course_member", "remove_group_member", "revoke_api_key", "set_course_member",
    "set_password", "set_policy", "set_quota", "update_policy", "update_user", "user_view", "valid_id",
]
