// Prompt templates (issue 15): everyone sees the templates they may run and runs them through a form
// generated from the parameter types; a course's teachers create and edit them (every change is a new version).
import { api, chatModels, streamNdjson } from "./api.js";
import { h, clear, decodePart, field } from "./dom.js";
import { t, fmtDateTime } from "./i18n.js";
import { session, isAdmin, isTeacher } from "./state.js";

const ROLES = ["student", "teacher", "researcher", "service"];
const PARAMS_EXAMPLE = JSON.stringify([
  { name: "essay", type: "string", max_length: 4000, label: "Aufsatz" },
  { name: "level", type: "enum", values: ["A1", "B2", "C1"] },
  { name: "hints", type: "integer", min: 1, max: 5, default: 3 },
  { name: "goals", type: "course", field: "learning_objectives" },
], null, 1);

export async function templatesView(outlet, path) {
  const main = h("main", { id: "main", class: "page" });
  clear(outlet, main);
  const run = path.match(/^\/templates\/([^/]+)\/run$/);
  const edit = path.match(/^\/templates\/([^/]+)$/);
  if (run) return runForm(main, await api(`/templates/${encodeURIComponent(decodePart(run[1]))}`));
  if (edit) {
    const slug = decodePart(edit[1]);
    const [models, courses] = await Promise.all([chatModels().then((r) => r.models), teacherCourses()]);
    if (slug === "new") return editForm(main, null, models, courses);
    const [tpl, versions] = await Promise.all([api(`/templates/${encodeURIComponent(slug)}`),
      api(`/templates/${encodeURIComponent(slug)}/versions`)]);
    return editForm(main, tpl, models, courses, versions.versions || []);
  }
  const [list, courses] = await Promise.all([api("/templates").then((r) => r.templates || []), teacherCourses()]);
  clear(main, h("h1", {}, t("tpl_title")), h("p", {}, t("tpl_intro")),
    courses.length ? h("a", { class: "button", href: "#/templates/new" }, t("tpl_new")) : null,
    list.length ? h("div", { class: "cards" }, list.map(card)) : h("p", {}, t("tpl_none")));
}

async function teacherCourses() {
  if (!isTeacher()) return [];
  if (isAdmin()) {
    try { return (await api("/admin/courses")).courses || []; } catch { /* not admin after all */ }
  }
  return (session.me?.courses || []).filter((c) => c.role === "teacher");
}

function card(tpl) {
  const slug = encodeURIComponent(tpl.slug);
  return h("section", { class: "card", "aria-labelledby": `tpl-${tpl.slug}` },
    h("h2", { id: `tpl-${tpl.slug}` }, tpl.name),
    h("p", { class: "hint" }, `${tpl.course?.title || tpl.course?.name || ""} · ${tpl.model} · ${t("tpl_version", { n: tpl.version })}`
      + (tpl.disabled ? ` · ${t("tpl_disabled")}` : "")),
    h("p", { class: "plain" }, tpl.description || ""),
    h("p", { class: "hint" }, t("tpl_model_name", { name: tpl.model_name })),
    h("p", {}, h("a", { href: `#/templates/${slug}/run` }, t("tpl_run")),
      tpl.can_edit ? [" · ", h("a", { href: `#/templates/${slug}` }, t("edit"))] : null));
}

// ---- the run form, generated from the parameter types ---------------------------------------
function control(p, tpl) {
  const id = `tpl-p-${p.name}`;
  const required = p.required !== false && p.default === undefined;
  if (p.type === "course") {
    return h("output", { id, class: "plain" }, tpl.course?.[p.field] || "—");
  }
  if (p.type === "enum") {
    return h("select", { id, name: p.name, required },
      required ? h("option", { value: "" }, "—") : h("option", { value: "" }, t("tpl_optional")),
      p.values.map((v) => h("option", { value: v, selected: p.default === v }, v)));
  }
  if (p.type === "integer" || p.type === "number") {
    return h("input", { id, name: p.name, type: "number", required, step: p.type === "integer" ? "1" : "any",
      min: p.min ?? null, max: p.max ?? null, value: p.default ?? "" });
  }
  const long = (p.max_length || 2000) > 200;
  return h(long ? "textarea" : "input", { id, name: p.name, required, maxlength: String(p.max_length || 2000),
    rows: long ? "6" : null, value: p.default ?? "" });
}

function hintOf(p, tpl) {
  const parts = [p.description || ""];
  if (p.type === "string") parts.push(t("tpl_hint_length", { max: p.max_length }));
  if ((p.type === "integer" || p.type === "number") && (p.min !== undefined || p.max !== undefined)) {
    parts.push(t("tpl_hint_range", { min: p.min ?? "−∞", max: p.max ?? "∞" }));
  }
  if (p.type === "course") parts.push(t("tpl_hint_course", { course: tpl.course?.title || tpl.course?.name || "" }));
  return parts.filter(Boolean).join(" ");
}

function runForm(main, tpl) {
  const controls = tpl.parameters.map((p) => [p, control(p, tpl)]);
  const output = h("div", { id: "tpl-output", class: "plain answer", "aria-live": "polite" });
  const error = h("p", { class: "error", role: "alert" });
  const button = h("button", { type: "submit" }, t("tpl_run"));
  const submit = async (ev) => {
    ev.preventDefault();
    error.textContent = "";
    output.textContent = "";
    const parameters = {};
    for (const [p, el] of controls) {
      if (p.type === "course" || el.value === "") continue;
      parameters[p.name] = p.type === "integer" ? Number.parseInt(el.value, 10) : p.type === "number" ? Number(el.value) : el.value;
    }
    button.disabled = true;
    try {
      await streamNdjson(`/templates/${encodeURIComponent(tpl.slug)}/run`, { parameters, stream: true }, (chunk) => {
        if (chunk.message?.content) output.textContent += chunk.message.content;
      });
    } catch (err) { error.textContent = err.message; }
    finally { button.disabled = false; }
  };
  clear(main, h("h1", {}, tpl.name), h("p", { class: "plain" }, tpl.description || ""),
    h("form", { id: "tpl-run-form", onsubmit: submit },
      controls.map(([p, el]) => field(p.label || p.name, el, hintOf(p, tpl))),
      h("div", { class: "toolbar" }, button, h("a", { class: "button secondary", href: "#/templates" }, t("back_to_list"))),
      error),
    h("h2", {}, t("tpl_answer")), output);
}

// ---- create and edit (teachers) ---------------------------------------------------------------
function editForm(main, tpl, models, courses, versions = []) {
  const v = tpl || { parameters: [], options: {}, roles: [], courses: [] };
  const course = h("select", { id: "tpl-course", required: true, disabled: Boolean(tpl) },
    courses.map((c) => h("option", { value: c.id, selected: tpl && tpl.course?.id === c.id }, c.title ? `${c.title} (${c.name})` : c.name)));
  const slug = h("input", { id: "tpl-slug", maxlength: "48", pattern: "[a-z][a-z0-9\\-]{1,47}", value: v.slug || "", disabled: Boolean(tpl) });
  const name = h("input", { id: "tpl-name", required: true, maxlength: "100", value: v.name || "" });
  const description = h("textarea", { id: "tpl-description", rows: "2", maxlength: "5000", value: v.description || "" });
  const instructions = h("textarea", { id: "tpl-instructions", rows: "6", required: true, maxlength: "20000", value: v.instructions || "" });
  const params = h("textarea", { id: "tpl-parameters", rows: "10", class: "mono",
    value: tpl ? JSON.stringify(v.parameters, null, 1) : PARAMS_EXAMPLE });
  const model = h("select", { id: "tpl-model" }, models.map((m) => h("option", { value: m.name, selected: m.name === v.model }, m.name)));
  const temperature = h("input", { id: "tpl-temperature", type: "number", min: "0", max: "2", step: "0.1", value: v.options?.temperature ?? "" });
  const maxTokens = h("input", { id: "tpl-max-tokens", type: "number", min: "1", max: "8192", step: "1", value: v.options?.num_predict ?? "" });
  const roles = ROLES.map((r) => [r, h("input", { id: `tpl-role-${r}`, type: "checkbox", checked: (v.roles || []).includes(r) })]);
  const disabled = h("input", { id: "tpl-disabled", type: "checkbox", checked: Boolean(v.disabled) });
  const error = h("p", { class: "error", role: "alert" });
  const submit = async (ev) => {
    ev.preventDefault();
    error.textContent = "";
    let parameters;
    try { parameters = JSON.parse(params.value || "[]"); } catch (err) { error.textContent = `${t("tpl_parameters")}: ${err.message}`; return; }
    const options = {};
    if (temperature.value !== "") options.temperature = Number.parseFloat(temperature.value);
    if (maxTokens.value !== "") options.num_predict = Number.parseInt(maxTokens.value, 10);
    const body = { name: name.value.trim(), description: description.value, instructions: instructions.value, parameters,
      model: model.value, options, roles: roles.filter(([, box]) => box.checked).map(([r]) => r) };
    try {
      if (tpl) await api(`/templates/${encodeURIComponent(tpl.slug)}`, { method: "PUT", body: { ...body, disabled: disabled.checked } });
      else await api("/templates", { method: "POST", body: { ...body, course_id: Number(course.value), slug: slug.value || undefined } });
      location.hash = "#/templates";
    } catch (err) { error.textContent = err.message; }
  };
  const remove = tpl ? h("button", { type: "button", class: "danger", onclick: async () => {
    if (!window.confirm(t("delete_confirm", { title: tpl.name }))) return;
    try { await api(`/templates/${encodeURIComponent(tpl.slug)}`, { method: "DELETE" }); location.hash = "#/templates"; }
    catch (err) { error.textContent = err.message; }
  } }, t("delete")) : null;
  clear(main, h("h1", {}, tpl ? t("tpl_edit") : t("tpl_new")),
    h("form", { id: "tpl-edit-form", onsubmit: submit },
      field(t("course"), course), field(t("tpl_slug"), slug, t("tpl_slug_hint")), field(t("name"), name),
      field(t("description"), description), field(t("tpl_instructions"), instructions, t("tpl_instructions_hint")),
      field(t("tpl_parameters"), params, t("tpl_parameters_hint")), field(t("model"), model),
      field(t("temperature"), temperature, t("temperature_hint")), field(t("max_tokens"), maxTokens, t("max_tokens_hint")),
      h("fieldset", {}, h("legend", {}, t("tpl_roles")), h("p", { class: "hint" }, t("tpl_roles_hint")),
        roles.map(([r, box]) => h("div", { class: "field inline" }, box, h("label", { for: box.id }, r)))),
      tpl ? h("div", { class: "field inline" }, disabled, h("label", { for: "tpl-disabled" }, t("tpl_switch_off"))) : null,
      h("div", { class: "toolbar" }, h("button", { type: "submit" }, t("save")),
        h("a", { class: "button secondary", href: "#/templates" }, t("cancel")), remove), error),
    versions.length ? h("section", {}, h("h2", {}, t("tpl_versions")),
      h("ul", {}, versions.map((x) => h("li", {}, h("details", {},
        h("summary", {}, `${t("tpl_version", { n: x.version })} · ${fmtDateTime(x.created_at)} · ${x.name} · ${x.model}`),
        h("pre", { class: "plain" }, x.instructions || "")))))) : null);
  name.focus();
}
