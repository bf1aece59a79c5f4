// Model policies in the administration (/admin/policies): which roles and groups may use a
// model (name or glob), with caps on context and answer length. A rule admits the members of
// its roles or of its groups; a rule with neither admits everyone (flexi/access/policy.py).
// In the form, nothing ticked stands for "no restriction" (null), as the API takes it.
import { api } from "./api.js";
import { h, clear, field } from "./dom.js";
import { t, fmtNumber } from "./i18n.js";
import { table, searchBar, deleteButton, focusIn } from "./admin_parts.js";

const ROLES = ["student", "teacher", "researcher", "service", "admin"];

export async function policiesTab(body, id) {
  return id ? edit(body, id) : list(body, "");
}

// Who a rule admits, in words: everyone, only administrators, or the roles and groups it names.
function admitted(p) {
  if (p.allowed_roles === null && p.allowed_groups === null) return t("everyone");
  const names = [...(p.allowed_roles || []).map((r) => t(`role_${r}`)), ...(p.allowed_groups || [])];
  return names.length ? names.join(", ") : t("admins_only");
}

const cap = (v) => (v === null || v === undefined ? "–" : fmtNumber(v));

async function list(body, search, focus) {
  const query = search ? `?search=${encodeURIComponent(search)}` : "";
  const [policies, form] = await Promise.all([api(`/admin/policies${query}`), policyForm(null)]);
  const error = h("p", { class: "error", role: "alert" });
  const redraw = (s, f) => list(body, s, f);
  const rows = (policies.policies || []).map((p) => h("tr", {}, h("td", {}, h("code", {}, p.pattern)), h("td", {}, admitted(p)),
    h("td", {}, cap(p.max_context)), h("td", {}, cap(p.max_output)),
    h("td", {}, h("div", { class: "actions" },
      h("a", { class: "button secondary", href: `#/admin/policies/${p.id}`, "aria-label": t("policy_edit", { pattern: p.pattern }) }, t("edit")),
      deleteButton(t("policy_delete_named", { pattern: p.pattern }), t("policy_delete_confirm", { pattern: p.pattern }), async () => {
        await api(`/admin/policies/${p.id}`, { method: "DELETE" });
        await redraw(search, "#policies-search");
      }, error)))));
  form.onSubmit(async (payload) => {
    try { await api("/admin/policies", { method: "POST", body: payload }); await redraw(search, "#policy-pattern"); }
    catch (err) { error.textContent = err.message; }
  });
  clear(body, error, searchBar("policies-search", t("policies_search"), search, (s) => redraw(s, "#policies-search")),
    table([t("policy_pattern"), t("policy_who"), t("policy_max_context"), t("policy_max_output"), ""], rows, t("admin_policies")),
    h("form", { onsubmit: form.submit }, h("h2", {}, t("policy_create")), form.fields, h("button", { type: "submit" }, t("create"))),
    h("p", { class: "hint" }, t("policy_intro")));
  if (focus) focusIn(body, focus);
}

async function edit(body, id) {
  const policy = await api(`/admin/policies/${encodeURIComponent(id)}`);
  const form = await policyForm(policy);
  const error = h("p", { class: "error", role: "alert" });
  form.onSubmit(async (payload) => {
    const changes = {}; // only what changed: an empty list set elsewhere (administrators only) stays as it is
    for (const [name, value] of Object.entries(payload)) {
      if (!same(value, policy[name] ?? null)) changes[name] = value;
    }
    try {
      if (Object.keys(changes).length) await api(`/admin/policies/${policy.id}`, { method: "PATCH", body: changes });
      location.hash = "#/admin/policies";
    } catch (err) { error.textContent = err.message; }
  });
  clear(body, h("p", {}, h("a", { href: "#/admin/policies" }, t("back_to_list"))),
    h("h2", {}, t("policy_edit", { pattern: policy.pattern })), error,
    h("form", { onsubmit: form.submit }, form.fields, h("div", { class: "toolbar" }, h("button", { type: "submit" }, t("save")),
      h("a", { class: "button secondary", href: "#/admin/policies" }, t("cancel")))));
  focusIn(body, "#policy-pattern");
}

// Equal for the form: lists as sets, with no list and an empty list alike (both show nothing ticked).
function same(a, b) {
  if (Array.isArray(a) || Array.isArray(b)) return JSON.stringify([...(a || [])].sort()) === JSON.stringify([...(b || [])].sort());
  return a === b;
}

// The fields of a policy (empty, or filled from `p`), and the payload they make.
async function policyForm(p) {
  const [groups, tags] = await Promise.all([api("/admin/groups?limit=500"), api("/api/tags")]);
  const groupNames = (groups.groups || []).map((g) => g.name);
  for (const name of p?.allowed_groups || []) if (!groupNames.includes(name)) groupNames.push(name); // named, not (yet) created
  const pattern = h("input", { id: "policy-pattern", required: true, maxlength: "255", size: "40", list: "policy-models", value: p?.pattern || "" });
  const models = h("datalist", { id: "policy-models" }, (tags.models || []).map((m) => h("option", { value: m.name })));
  const box = (prefix, value, label, checked) => {
    const input = h("input", { type: "checkbox", id: `${prefix}-${value}`, value, checked });
    return { input, el: h("div", { class: "field inline" }, input, h("label", { for: input.id }, label)) };
  };
  const roleBoxes = ROLES.map((r) => box("policy-role", r, t(`role_${r}`), (p?.allowed_roles || []).includes(r)));
  const groupBoxes = groupNames.map((g, i) => ({ name: g, ...box("policy-group", String(i), g, (p?.allowed_groups || []).includes(g)) }));
  const context = h("input", { id: "policy-context", type: "number", min: "1", value: p?.max_context ?? "" });
  const output = h("input", { id: "policy-output", type: "number", min: "1", value: p?.max_output ?? "" });
  const chosen = (boxes, nameOf) => {
    const picked = boxes.filter((b) => b.input.checked).map(nameOf);
    return picked.length ? picked : null;
  };
  const num = (input) => (input.value === "" ? null : Number(input.value));
  let handler = async () => {};
  const fields = h("div", {},
    h("div", { class: "toolbar" }, field(t("policy_pattern"), pattern, t("policy_pattern_hint"))), models,
    h("fieldset", { "aria-describedby": "policy-who-hint" }, h("legend", {}, t("policy_who")),
      h("p", { class: "hint", id: "policy-who-hint" }, t("policy_who_hint")),
      h("div", { role: "group", "aria-label": t("policy_roles"), class: "toolbar" }, h("span", { class: "label" }, t("policy_roles")), roleBoxes.map((b) => b.el)),
      h("div", { role: "group", "aria-label": t("admin_groups"), class: "toolbar" }, h("span", { class: "label" }, t("admin_groups")),
        groupBoxes.length ? groupBoxes.map((b) => b.el) : h("span", { class: "hint" }, t("policy_no_groups")))),
    h("div", { class: "toolbar" }, field(t("policy_max_context"), context), field(t("policy_max_output"), output)),
    h("p", { class: "hint" }, t("policy_caps_hint")));
  return {
    fields,
    onSubmit(fn) { handler = fn; },
    submit: (ev) => {
      ev.preventDefault();
      handler({ pattern: pattern.value.trim(), allowed_roles: chosen(roleBoxes, (b) => b.input.value),
        allowed_groups: chosen(groupBoxes, (b) => b.name), max_context: num(context), max_output: num(output) });
    },
  };
}
