// Administration: users and roles, groups and courses with their members (admin_members.js),
// API keys, quotas, model policies (admin_policies.js), models (pull with progress,
// load/unload, memory), the usage dashboard (charts rendered by the server as SVG) and energy (admin_energy.js).
import { api, streamNdjson } from "./api.js";
import { h, clear, field, decodePart } from "./dom.js";
import { t, fmtNumber, fmtBytes, fmtDateTime, locale } from "./i18n.js";
import { table } from "./admin_parts.js";
import { memberSetTab } from "./admin_members.js";
import { policiesTab } from "./admin_policies.js";
import { energyTab } from "./admin_energy.js";
import { measuredFacts } from "./measured.js";

const ROLES = ["student", "teacher", "researcher", "service", "admin"];
const TABS = [["users", "admin_users"], ["groups", "admin_groups"], ["courses", "admin_courses"], ["keys", "admin_keys"],
  ["quotas", "admin_quotas"], ["policies", "admin_policies"], ["models", "admin_models"], ["usage", "admin_usage"],
  ["energy", "admin_energy"]];

export async function adminView(outlet, path) {
  const parts = path.split("/"); // #/admin/<tab>[/<id>]
  const tab = parts[2] || "users";
  const id = parts[3] ? decodePart(parts[3]) : null;
  const main = h("main", { id: "main", class: "page" });
  const tabs = h("nav", { class: "toolbar", "aria-label": t("admin_sections") }, TABS.map(([name, key]) =>
    h("a", { href: `#/admin/${name}`, "aria-current": name === tab ? "page" : null, class: name === tab ? "button" : "button secondary" }, t(key))));
  const body = h("div");
  clear(outlet, main);
  main.append(h("h1", {}, t("nav_admin")), tabs, body);
  const view = { users, groups: memberSetTab("groups"), courses: memberSetTab("courses"), keys, quotas,
    policies: policiesTab, models, usage, energy: energyTab }[tab] || users;
  await view(body, id);
}

async function users(body) {
  const list = (await api("/admin/users?limit=500")).users;
  const error = h("p", { class: "error", role: "alert" });
  const rows = list.map((u) => {
    const role = h("select", { "aria-label": t("role_of", { name: u.subject }), onchange: async () => {
      try { await api(`/admin/users/${u.id}`, { method: "PATCH", body: { role: role.value } }); error.textContent = ""; }
      catch (err) { error.textContent = err.message; }
    } }, ROLES.map((r) => h("option", { value: r, selected: r === u.role }, t(`role_${r}`))));
    const toggle = h("button", { type: "button", class: u.disabled ? "secondary" : "danger", onclick: async () => {
      try { await api(`/admin/users/${u.id}`, { method: "PATCH", body: { disabled: !u.disabled } }); await users(body); }
      catch (err) { error.textContent = err.message; }
    } }, u.disabled ? t("enable") : t("disable"));
    return h("tr", {}, h("td", {}, u.subject), h("td", {}, u.display_name || ""), h("td", {}, role),
      h("td", {}, u.disabled ? t("disabled") : t("active")), h("td", {}, fmtDateTime(u.created_at)), h("td", {}, toggle));
  });
  const subject = h("input", { id: "new-user", required: true, maxlength: "255" });
  const display = h("input", { id: "new-user-name", maxlength: "255" });
  const password = h("input", { id: "new-user-pass", type: "password", autocomplete: "new-password" });
  const role = h("select", { id: "new-user-role" }, ROLES.map((r) => h("option", { value: r }, t(`role_${r}`))));
  const create = h("form", { onsubmit: async (ev) => {
    ev.preventDefault();
    const payload = { subject: subject.value.trim(), role: role.value };
    if (display.value.trim()) payload.display_name = display.value.trim();
    if (password.value) payload.password = password.value;
    try { await api("/admin/users", { method: "POST", body: payload }); await users(body); }
    catch (err) { error.textContent = err.message; }
  } }, h("h2", {}, t("user_create")), h("div", { class: "toolbar" }, field(t("username"), subject), field(t("display_name"), display),
    field(t("password"), password, t("password_hint")), field(t("role"), role), h("button", { type: "submit" }, t("create"))));
  clear(body, error, table([t("username"), t("display_name"), t("role"), t("status"), t("created"), ""], rows, t("admin_users")), create);
}

async function keys(body) {
  const list = (await api("/admin/keys?state=active&limit=500")).keys || [];
  const error = h("p", { class: "error", role: "alert" });
  const rows = list.map((k) => h("tr", {}, h("td", {}, h("code", {}, k.prefix)), h("td", {}, k.name || ""), h("td", {}, k.owner || String(k.owner_id)),
    h("td", {}, (k.scopes || []).join(", ") || t("all")), h("td", {}, k.expires_at ? fmtDateTime(k.expires_at) : t("never")),
    h("td", {}, k.last_used_at ? fmtDateTime(k.last_used_at) : "–"),
    h("td", {}, h("button", { type: "button", class: "danger", "aria-label": t("revoke_named", { prefix: k.prefix }), onclick: async () => {
      if (!window.confirm(t("revoke_confirm", { prefix: k.prefix }))) return;
      try { await api(`/admin/keys/${k.id}`, { method: "DELETE" }); await keys(body); } catch (err) { error.textContent = err.message; }
    } }, t("revoke")))));
  clear(body, error, table([t("key_prefix"), t("name"), t("owner"), t("scopes"), t("expires"), t("last_used"), ""], rows, t("admin_keys")));
}

async function quotas(body) {
  const list = (await api("/admin/quotas")).quotas || [];
  const error = h("p", { class: "error", role: "alert" });
  const num = (v) => (v === null || v === undefined ? t("unlimited") : fmtNumber(v));
  const rows = list.map((q) => h("tr", {}, h("td", {}, t(`quota_kind_${q.kind}`)), h("td", {}, q.label || String(q.subject)),
    h("td", {}, num(q.requests_per_minute)), h("td", {}, num(q.tokens_per_day)), h("td", {}, num(q.tokens_per_week))));
  const role = h("select", { id: "quota-role" }, ROLES.map((r) => h("option", { value: r }, t(`role_${r}`))));
  const rpm = h("input", { id: "quota-rpm", type: "number", min: "0" });
  const day = h("input", { id: "quota-day", type: "number", min: "0" });
  const week = h("input", { id: "quota-week", type: "number", min: "0" });
  const val = (input) => (input.value === "" ? null : Number(input.value));
  const form = h("form", { onsubmit: async (ev) => {
    ev.preventDefault();
    try {
      await api(`/admin/quotas/role/${role.value}`, { method: "PUT", body: { requests_per_minute: val(rpm), tokens_per_day: val(day), tokens_per_week: val(week) } });
      await quotas(body);
    } catch (err) { error.textContent = err.message; }
  } }, h("h2", {}, t("quota_role_set")), h("div", { class: "toolbar" }, field(t("role"), role), field(t("requests_per_minute"), rpm),
    field(t("tokens_per_day"), day), field(t("tokens_per_week"), week), h("button", { type: "submit" }, t("save"))),
  h("p", { class: "hint" }, t("quota_empty_hint")));
  clear(body, error, table([t("applies_to"), t("subject"), t("requests_per_minute"), t("tokens_per_day"), t("tokens_per_week")], rows, t("admin_quotas")), form);
}

let modelsRender = 0; // only the newest rendering of the models tab may draw (answers can arrive out of order)

async function models(body) {
  const mine = ++modelsRender;
  const [tags, ps, cards] = await Promise.all([api("/api/tags"), api("/api/ps"), api("/ui/models")]);
  if (mine !== modelsRender) return;
  const loaded = new Map(ps.models.map((m) => [m.name, m]));
  // the catalogue family of each model (flexi.catalog): licence and openness after Liesenfeld & Dingemanse
  const families = new Map(cards.models.filter((m) => m.catalog).map((m) => [m.name, m.catalog]));
  const measured = new Map(cards.models.map((m) => [m.name, measuredFacts(m.measured).join(" · ")]));
  const family = (name) => {
    const c = families.get(name);
    return c ? `${c.name} · ${c.licence} · ${t("openness_score", { score: c.openness })}` : "";
  };
  const error = h("p", { class: "error", role: "alert" });
  const rows = tags.models.map((m) => {
    const live = loaded.get(m.name);
    const action = live
      ? h("button", { type: "button", class: "secondary", onclick: () => keepAlive(m.name, 0) }, t("unload"))
      : h("button", { type: "button", onclick: () => keepAlive(m.name, "30m") }, t("load"));
    return h("tr", {}, h("td", {}, m.name), h("td", {}, m.details?.parameter_size || ""), h("td", {}, m.details?.quantization_level || ""),
      h("td", {}, family(m.name)), h("td", {}, measured.get(m.name) || ""), h("td", {}, fmtBytes(m.size)), h("td", {}, live ? t("loaded_memory", { size: fmtBytes(live.size), until: fmtDateTime(live.expires_at) }) : t("not_loaded")),
      h("td", {}, action));
  });
  async function keepAlive(name, value) {
    error.textContent = "";
    try { await api("/api/generate", { method: "POST", body: { model: name, keep_alive: value } }); await models(body); }
    catch (err) { error.textContent = err.message; }
  }
  const source = h("input", { id: "pull-name", required: true, placeholder: "hf.co/org/repo:Q4_K_M · https://…/model.gguf" });
  const bar = h("progress", { id: "pull-progress", max: "1", value: "0", "aria-label": t("pull_progress") });
  const status = h("p", { id: "pull-status", role: "status", "aria-live": "polite" });
  const pullButton = h("button", { type: "submit" }, t("pull"));
  const pull = h("form", { onsubmit: async (ev) => {
    ev.preventDefault();
    pullButton.disabled = true;
    status.textContent = t("pull_starting");
    try {
      await streamNdjson("/api/pull", { model: source.value.trim(), stream: true }, (chunk) => {
        if (chunk.total) {
          bar.max = chunk.total; bar.value = chunk.completed || 0;
          status.textContent = `${chunk.status} — ${fmtBytes(chunk.completed || 0)} / ${fmtBytes(chunk.total)} (${fmtNumber(100 * (chunk.completed || 0) / chunk.total, 0)} %)`;
        } else status.textContent = chunk.status;
      });
      bar.max = 1; bar.value = 1;
      await models(body);
      const done = body.querySelector("#pull-status");
      if (done) done.textContent = t("pull_done");
    } catch (err) { status.textContent = `${t("error")}: ${err.message}`; status.classList.add("error"); }
    finally { pullButton.disabled = false; }
  } }, h("h2", {}, t("pull_title")), field(t("pull_source"), source, t("pull_hint")), pullButton, bar, status);
  clear(body, error, table([t("model"), t("parameters_col"), t("quantization"), t("model_family"), t("measured_col"), t("size"), t("memory"), ""], rows, t("admin_models")), pull);
}

async function usage(body) {
  const lang = locale();
  const days = 30;
  const charts = [["day", "requests"], ["day", "tokens"], ["model", "tokens"], ["course", "tokens"]].map(([by, metric]) =>
    h("figure", {}, h("img", { src: `/admin/usage/chart.svg?by=${by}&metric=${metric}&days=${days}&lang=${lang}`,
      alt: t(`chart_${metric}_${by}`), width: "640", height: "260", loading: "lazy" })));
  const perModel = (await api("/admin/usage?by=model")).rows || [];
  const rows = perModel.map((r) => h("tr", {}, h("td", {}, String(r.model)), h("td", {}, fmtNumber(r.requests)),
    h("td", {}, fmtNumber(r.prompt_tokens)), h("td", {}, fmtNumber(r.completion_tokens))));
  const perTemplate = (await api("/admin/usage?by=template")).rows || [];
  const templateRows = perTemplate.map((r) => h("tr", {}, h("td", {}, r.template ?? "—"), h("td", {}, fmtNumber(r.requests)),
    h("td", {}, fmtNumber(r.prompt_tokens)), h("td", {}, fmtNumber(r.completion_tokens))));
  clear(body, h("p", {}, t("usage_intro", { days })), h("div", { class: "charts" }, charts),
    h("h2", {}, t("usage_per_model")), table([t("model"), t("requests"), t("prompt_tokens"), t("completion_tokens")], rows, t("usage_per_model")),
    templateRows.length ? [h("h2", {}, t("usage_per_template")),
      table([t("tpl_title"), t("requests"), t("prompt_tokens"), t("completion_tokens")], templateRows, t("usage_per_template"))] : null);
}
