// Course assistants for teachers: create, edit, share, delete, and see their use
// (counts and tokens only, never students' texts).
import { api, chatModels } from "./api.js";
import { h, clear, decodePart, field } from "./dom.js";
import { t, fmtNumber, fmtDateTime } from "./i18n.js";
import { session, isAdmin } from "./state.js";
import { documentsSection } from "./documents.js";

export async function assistantsView(outlet, path) {
  const main = h("main", { id: "main", class: "page" });
  clear(outlet, main);
  const edit = path.match(/^\/assistants\/([^/]+)$/);
  const slug = edit ? decodePart(edit[1]) : null;
  const [list, models, courses] = await Promise.all([
    api("/assistants").then((r) => r.assistants || []), chatModels().then((r) => r.models), teacherCourses()]);
  if (slug === "new") return form(main, null, models, courses);
  if (slug !== null) {
    const a = list.find((x) => x.slug === slug) || await api(`/assistants/${encodeURIComponent(slug)}`);
    return form(main, a, models, courses);
  }
  const mine = list.filter((a) => a.can_edit);
  clear(main, h("h1", {}, t("assistants_title")), h("p", {}, t("assistants_intro")),
    courses.length ? h("a", { class: "button", href: "#/assistants/new" }, t("assistant_new")) : h("p", { class: "hint" }, t("assistants_no_course")),
    mine.length ? h("div", { class: "cards" }, mine.map((a) => card(a))) : h("p", {}, t("assistants_none")));
}

async function teacherCourses() {
  if (isAdmin()) {
    try { return (await api("/admin/courses")).courses || []; } catch { /* not admin after all */ }
  }
  return (session.me?.courses || []).filter((c) => c.role === "teacher");
}

function shareLink(a) { return `${location.origin}/#/a/${encodeURIComponent(a.slug)}`; }

function card(a) {
  const usage = h("div", { "aria-live": "polite" });
  return h("section", { class: "card", "aria-labelledby": `as-${a.slug}` },
    h("h2", { id: `as-${a.slug}`, style: null }, a.name),
    h("p", { class: "hint" }, `${a.course?.title || a.course?.name || ""} · ${a.model} · ${a.audience === "campus" ? t("audience_campus") : t("audience_course")}`),
    h("p", { class: "plain" }, a.description || ""),
    h("p", {}, h("a", { href: `#/a/${encodeURIComponent(a.slug)}` }, t("assistant_open")), " · ",
      h("a", { href: `#/assistants/${encodeURIComponent(a.slug)}` }, t("edit")), " · ",
      h("button", { type: "button", class: "link", onclick: async (ev) => {
        try { await navigator.clipboard.writeText(shareLink(a)); ev.target.textContent = t("copied"); } catch { ev.target.textContent = shareLink(a); }
      } }, t("copy_link")), " · ",
      h("button", { type: "button", class: "link", onclick: () => showUsage(a, usage) }, t("assistant_usage"))),
    usage);
}

async function showUsage(a, target) {
  try {
    const u = await api(`/assistants/${encodeURIComponent(a.slug)}/usage?days=30`);
    const rows = (u.days || []).map((d) => h("tr", {}, h("td", {}, d.day), h("td", {}, fmtNumber(d.requests)),
      h("td", {}, fmtNumber(d.prompt_tokens + d.completion_tokens))));
    clear(target, h("p", {}, t("assistant_usage_totals", { requests: fmtNumber(u.totals?.requests || 0),
      tokens: fmtNumber((u.totals?.prompt_tokens || 0) + (u.totals?.completion_tokens || 0)), users: fmtNumber(u.users || 0) })),
    rows.length ? h("table", {}, h("caption", { class: "visually-hidden" }, t("assistant_usage")),
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, t("day")), h("th", { scope: "col" }, t("requests")), h("th", { scope: "col" }, t("tokens")))),
      h("tbody", {}, rows)) : null);
  } catch (err) { clear(target, h("p", { class: "error", role: "alert" }, err.message)); }
}

function form(main, a, models, courses) {
  const v = a || { audience: "course", options: {}, example_questions: [] };
  const course = h("select", { id: "as-course", required: true, disabled: Boolean(a) },
    courses.map((c) => h("option", { value: c.id, selected: a && a.course?.id === c.id }, c.title ? `${c.title} (${c.name})` : c.name)));
  const name = h("input", { id: "as-name", required: true, maxlength: "100", value: v.name || "" });
  const description = h("textarea", { id: "as-description", rows: "3", maxlength: "5000", value: v.description || "" });
  const model = h("select", { id: "as-model" }, models.map((m) => h("option", { value: m.name, selected: m.name === v.model }, m.name)));
  const system = h("textarea", { id: "as-system", rows: "6", maxlength: "20000", value: v.system_prompt || "" });
  const welcome = h("textarea", { id: "as-welcome", rows: "3", maxlength: "5000", value: v.welcome_message || "" });
  const examples = h("textarea", { id: "as-examples", rows: "3", value: (v.example_questions || []).join("\n") });
  const temperature = h("input", { id: "as-temperature", type: "number", min: "0", max: "2", step: "0.1", value: v.options?.temperature ?? "" });
  const maxTokens = h("input", { id: "as-max-tokens", type: "number", min: "1", max: "8192", step: "1", value: v.options?.num_predict ?? "" });
  const audience = h("select", { id: "as-audience" },
    h("option", { value: "course", selected: v.audience !== "campus" }, t("audience_course")),
    h("option", { value: "campus", selected: v.audience === "campus" }, t("audience_campus")));
  const show = h("input", { id: "as-show", type: "checkbox", checked: Boolean(v.show_system_prompt) });
  const error = h("p", { class: "error", role: "alert" });
  const submit = async (ev) => {
    ev.preventDefault();
    error.textContent = "";
    const options = {};
    if (temperature.value !== "") options.temperature = Number.parseFloat(temperature.value);
    if (maxTokens.value !== "") options.num_predict = Number.parseInt(maxTokens.value, 10);
    const body = { name: name.value.trim(), description: description.value, model: model.value, system_prompt: system.value,
      welcome_message: welcome.value, example_questions: examples.value.split("\n").map((x) => x.trim()).filter(Boolean),
      options, audience: audience.value, show_system_prompt: show.checked };
    try {
      if (a) await api(`/assistants/${encodeURIComponent(a.slug)}`, { method: "PATCH", body });
      else await api("/assistants", { method: "POST", body: { ...body, course_id: Number(course.value) } });
      location.hash = "#/assistants";
    } catch (err) { error.textContent = err.message; }
  };
  const remove = a ? h("button", { type: "button", class: "danger", onclick: async () => {
    if (!window.confirm(t("delete_confirm", { title: a.name }))) return;
    try { await api(`/assistants/${encodeURIComponent(a.slug)}`, { method: "DELETE" }); location.hash = "#/assistants"; }
    catch (err) { error.textContent = err.message; }
  } }, t("delete")) : null;
  clear(main, h("h1", {}, a ? t("assistant_edit") : t("assistant_new")),
    h("form", { onsubmit: submit },
      field(t("course"), course), field(t("name"), name), field(t("description"), description, t("description_hint")),
      field(t("model"), model), field(t("system_prompt"), system, t("assistant_system_hint")),
      field(t("welcome_message"), welcome), field(t("example_questions"), examples, t("example_questions_hint")),
      field(t("temperature"), temperature, t("temperature_hint")), field(t("max_tokens"), maxTokens, t("max_tokens_hint")),
      field(t("audience"), audience, t("audience_hint")),
      h("div", { class: "field inline" }, show, h("label", { for: "as-show" }, t("show_system_prompt"))),
      h("div", { class: "toolbar" }, h("button", { type: "submit" }, t("save")),
        h("a", { class: "button secondary", href: "#/assistants" }, t("cancel")), remove), error),
    a ? h("p", { class: "hint" }, t("updated_at", { when: fmtDateTime(a.updated_at) })) : null,
    // course documents: only for who may change the assistant (the course's teachers, admins)
    a?.can_edit ? documentsSection(a) : null,
    a ? null : h("p", { class: "hint" }, t("documents_after_save")));
  name.focus();
}
