// The chat page: conversation list, model picker, streaming answers with stop,
// regenerate and edit-and-resend, course assistants, queue/loading status and quota.
import { api, ApiError, chatModels, streamNdjson } from "./api.js";
import { h, clear, decodePart, field } from "./dom.js";
import { t, fmtNumber, fmtBytes, fmtDateTime } from "./i18n.js";
import { renderMarkdown } from "./markdown.js";
import { linkMarkers, openPassage, sourcesList } from "./citations.js";
import { session } from "./state.js";
import { measuredFacts } from "./measured.js";
import { storage } from "./storage.js";

const TITLE_CHARS = 60;
let running = null; // { controller } of the answer being streamed

// Leaving the page (another conversation, another view, sign-out, language switch) stops the
// answer being streamed: it would otherwise keep using the model and the quota unseen, and
// the next page would think it is busy. The stopped page still saves what arrived.
export function stopStreaming() {
  if (running) { running.controller.abort(); running = null; }
}

export async function chatView(outlet, path, isCurrent = () => true) {
  const match = path.match(/^\/(c|a)\/([^/]+)$/);
  const [{ models, fallback }, assistants] = await Promise.all([loadModels(), loadAssistants()]);
  let conversation = null;
  let assistant = null;
  if (match && match[1] === "c") {
    conversation = await session.store.get(decodePart(match[2]));
    if (conversation?.assistant_slug || conversation?.assistant_id) {
      assistant = assistants.find((a) => a.slug === conversation.assistant_slug || a.id === conversation.assistant_id) || null;
      // a campus-wide assistant opened by link is not in the list of one's courses' assistants
      if (!assistant && conversation.assistant_slug) assistant = await loadAssistant(conversation.assistant_slug);
    }
  } else if (match && match[1] === "a") {
    assistant = await loadAssistant(decodePart(match[2]));
  }
  if (!isCurrent()) return; // the person has already gone elsewhere: do not draw over the newer page
  const view = new ChatPage(outlet, { models, fallback, assistants, conversation, assistant, notFound: match && !conversation && !assistant });
  await view.render();
}

async function loadModels() {
  try {
    return await chatModels();
  } catch (err) { if (err.status === 401) throw err; return { models: [], fallback: null }; }
}

async function loadAssistants() {
  try { return (await api("/assistants")).assistants || []; } catch (err) { if (err.status === 401) throw err; return []; }
}

async function loadAssistant(slug) {
  try { return await api(`/assistants/${encodeURIComponent(slug)}`); } catch (err) {
    if (err instanceof ApiError && err.status === 404) return null;
    throw err;
  }
}

class ChatPage {
  constructor(outlet, { models, fallback, assistants, conversation, assistant, notFound }) {
    this.outlet = outlet;
    this.models = models;
    this.fallback = fallback; // the server's default model, chosen when the person has not picked one
    this.assistants = assistants;
    this.conversation = conversation;
    this.assistant = assistant;
    this.notFound = notFound;
    this.messages = conversation ? [...conversation.messages] : [];
    this.settings = loadSettings();
    this.saveError = null; // set when the conversation could not be saved; shown again after the answer
  }

  async render() {
    const sidebar = h("aside", { class: "sidebar", "aria-label": t("conversations") });
    this.sidebar = sidebar;
    const main = h("main", { id: "main", class: "chat" });
    clear(this.outlet, h("div", { class: "layout" }, sidebar, main));
    await this.renderSidebar();
    if (this.notFound) {
      clear(main, h("div", { class: "page", style: null }, h("h1", {}, t("not_found_title")), h("p", {}, t("not_found_text"))));
      return;
    }
    this.renderMain(main);
  }

  async renderSidebar() {
    const list = await session.store.list();
    const current = this.conversation?.id;
    const items = list.map((c) => {
      const link = h("a", { href: `#/c/${encodeURIComponent(c.id)}`, title: c.title, "aria-current": String(c.id) === String(current) ? "page" : null }, c.title || t("untitled"));
      const rename = h("button", { type: "button", class: "link", "aria-label": t("rename_named", { title: c.title }), onclick: () => this.rename(c) }, t("rename"));
      const remove = h("button", { type: "button", class: "link", "aria-label": t("delete_named", { title: c.title }), onclick: () => this.remove(c) }, t("delete"));
      return h("li", {}, link, rename, remove);
    });
    const where = session.store.where === "server"
      ? t("history_server", { days: session.config.chat_retention_days }) : t("history_browser");
    const courseAssistants = this.assistants.map((a) => h("li", {}, h("a", { href: `#/a/${encodeURIComponent(a.slug)}` }, a.name)));
    clear(this.sidebar,
      h("a", { class: "button", href: "#/", onclick: () => { if (location.hash === "#/" || !location.hash) location.reload(); } }, t("new_chat")),
      h("h2", { id: "conv-heading" }, t("conversations")),
      items.length ? h("ul", { "aria-labelledby": "conv-heading" }, items) : h("p", { class: "hint" }, t("no_conversations")),
      h("p", { class: "hint" }, where),
      courseAssistants.length ? [h("h2", { id: "assist-heading" }, t("course_assistants")), h("ul", { "aria-labelledby": "assist-heading" }, courseAssistants)] : null);
  }

  renderMain(main) {
    const head = h("div", { class: "chat-head" });
    if (this.assistant) {
      const a = this.assistant;
      head.append(h("div", {}, h("h1", { style: null }, a.name), h("p", { class: "plain hint", "data-testid": "assistant-description" }, a.description || ""),
        h("p", { class: "hint" }, t("assistant_course", { course: a.course?.title || a.course?.name || "", model: a.model })),
        a.system_prompt ? h("details", {}, h("summary", {}, t("system_prompt")), h("p", { class: "plain" }, a.system_prompt)) : null));
    } else {
      head.append(this.modelPicker());
    }
    this.statusLine = h("p", { class: "status-line", role: "status", "aria-live": "polite" });
    this.list = h("div", { class: "messages", role: "log", "aria-label": t("messages"), "aria-live": "off" });
    this.input = h("textarea", { id: "prompt", rows: "3", placeholder: t("prompt_placeholder"), onkeydown: (ev) => {
      if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) { ev.preventDefault(); this.send(); }
    } });
    this.sendButton = h("button", { type: "button", onclick: () => this.send() }, t("send"));
    this.stopButton = h("button", { type: "button", class: "danger", hidden: true, onclick: () => this.stop() }, t("stop"));
    const composer = h("div", { class: "composer" },
      h("label", { for: "prompt", class: "visually-hidden" }, t("prompt_label")), this.input, this.sendButton, this.stopButton);
    this.quota = h("p", { class: "quota", "aria-live": "polite" });
    main.append(...[head, this.list, this.statusLine, this.assistant ? null : this.advanced(), composer, this.quota].filter(Boolean));
    this.renderMessages();
    this.refreshQuota();
    this.input.focus();
  }

  modelPicker() {
    const select = h("select", { id: "model-select", onchange: () => {
      this.settings.model = select.value;
      saveSettings(this.settings);
      facts.textContent = this.facts(select.value);
      badge.hidden = !this.models.find((m) => m.name === select.value)?.external;
    } });
    const known = (name) => (name && this.models.some((m) => m.name === name) ? name : null);
    const preferred = known(this.conversation?.model) || known(this.settings.model) || known(this.fallback);
    for (const m of this.models) {
      select.append(h("option", { value: m.name, selected: m.name === preferred, title: m.external ? t("external_hint") : null },
        m.external ? `${m.name} (${t("external")})` : m.name));
    }
    if (!this.models.length) select.append(h("option", { value: "" }, t("no_models")));
    const facts = h("span", { class: "model-facts", id: "model-facts" }, this.facts(select.value));
    // prompts to a cloud provider's model leave the university: say so next to the choice
    const badge = h("span", { class: "badge-external", id: "model-external", title: t("external_hint"), role: "note",
      "aria-label": t("external_hint") }, t("external"));
    badge.hidden = !this.models.find((m) => m.name === select.value)?.external;
    this.modelSelect = select;
    return h("div", { class: "field" }, h("label", { for: "model-select" }, t("model")), select, badge, facts);
  }

  facts(name) {
    const m = this.models.find((x) => x.name === name);
    if (!m) return "";
    const parts = [];
    if (m.parameter_size) parts.push(t("parameters", { n: m.parameter_size }));
    if (m.quantization) parts.push(m.quantization);
    parts.push(fmtBytes(m.size));
    parts.push(`${t("languages")}: ${m.languages.length ? m.languages.join(", ") : t("unknown")}`);
    parts.push(`${t("license")}: ${m.license || m.catalog?.licence || t("unknown")}`);
    // the family from Flexi's catalogue (GET /ui/catalog): openness after Liesenfeld & Dingemanse
    if (m.catalog) parts.push(`${t("model_family")}: ${m.catalog.name}`, t("openness_score", { score: m.catalog.openness }));
    parts.push(...measuredFacts(m.measured));
    if (m.loaded) parts.push(t("loaded"));
    return parts.join(" · ");
  }

  advanced() {
    const system = h("textarea", { id: "system-prompt", rows: "3", value: this.settings.system || "", onchange: () => {
      this.settings.system = system.value; saveSettings(this.settings);
    } });
    const temp = h("input", { id: "temperature", type: "number", min: "0", max: "2", step: "0.1", value: this.settings.temperature ?? "", onchange: () => {
      this.settings.temperature = temp.value; saveSettings(this.settings);
    } });
    const maxTokens = h("input", { id: "max-tokens", type: "number", min: "1", max: "32768", step: "1", value: this.settings.maxTokens ?? "", onchange: () => {
      this.settings.maxTokens = maxTokens.value; saveSettings(this.settings);
    } });
    return h("details", { class: "advanced" }, h("summary", {}, t("advanced")),
      field(t("system_prompt"), system, t("system_prompt_hint")), field(t("temperature"), temp, t("temperature_hint")),
      field(t("max_tokens"), maxTokens, t("max_tokens_hint")));
  }

  renderMessages() {
    clear(this.list);
    if (this.assistant && this.assistant.welcome_message && !this.messages.length) {
      this.list.append(h("div", { class: "welcome" }, h("p", { class: "plain" }, this.assistant.welcome_message),
        (this.assistant.example_questions || []).length ? h("div", { class: "examples" }, this.assistant.example_questions.map((q) =>
          h("button", { type: "button", onclick: () => { this.input.value = q; this.send(); } }, q))) : null));
    } else if (!this.messages.length) {
      this.list.append(h("div", { class: "welcome" }, h("p", {}, t("empty_chat"))));
      if (!this.assistant && this.assistants.length) {  // the start page: this person's course assistants
        this.list.append(h("section", { class: "welcome", "aria-labelledby": "start-assistants" },
          h("h2", { id: "start-assistants" }, t("course_assistants")),
          h("div", { class: "cards" }, this.assistants.map((a) => h("div", { class: "card" },
            h("h3", {}, h("a", { href: `#/a/${encodeURIComponent(a.slug)}` }, a.name)),
            h("p", { class: "hint" }, a.course?.title || a.course?.name || ""),
            h("p", { class: "plain" }, (a.description || "").slice(0, 280)))))));
      }
    }
    this.messages.forEach((m, i) => this.list.append(this.messageElement(m, i)));
    this.list.scrollTop = this.list.scrollHeight;
  }

  messageElement(message, index) {
    const isUser = message.role === "user";
    const body = h("div", { class: "body" });
    const cited = !isUser && this.assistant && Array.isArray(message.citations) && message.citations.length ? message.citations : null;
    const open = (c) => openPassage(this.assistant.slug, c);
    if (isUser) body.append(h("p", { class: "plain" }, message.content));
    else body.append(cited ? linkMarkers(renderMarkdown(message.content), cited, open) : renderMarkdown(message.content));
    const actions = h("span", { class: "actions" });
    const busy = Boolean(running);
    if (isUser && !busy) actions.append(h("button", { type: "button", class: "link", onclick: () => this.edit(index, body) }, t("edit")));
    if (!isUser && index === this.messages.length - 1 && !busy) {
      actions.append(h("button", { type: "button", class: "link", onclick: () => this.regenerate() }, t("regenerate")));
    }
    if (!isUser) actions.append(h("button", { type: "button", class: "link", onclick: async (ev) => {
      try { await navigator.clipboard.writeText(message.content); ev.target.textContent = t("copied"); } catch { ev.target.textContent = t("copy_failed"); }
    } }, t("copy")));
    const meta = message.note ? h("p", { class: "meta" }, message.note) : null;
    return h("article", { class: `msg ${isUser ? "user" : "assistant"}`, "aria-label": isUser ? t("you") : t("assistant") },
      h("div", { class: "who" }, isUser ? t("you") : (this.assistant?.name || t("assistant")), actions), body,
      cited ? sourcesList(cited, open) : null, meta);
  }

  edit(index, body) {
    const area = h("textarea", { rows: "4", "aria-label": t("edit_message"), value: this.messages[index].content });
    const save = h("button", { type: "button", onclick: () => {
      this.messages = this.messages.slice(0, index);
      this.input.value = area.value;
      this.send();
    } }, t("send_edited"));
    const cancel = h("button", { type: "button", class: "secondary", onclick: () => this.renderMessages() }, t("cancel"));
    clear(body, area, h("div", { class: "toolbar" }, save, cancel));
    area.focus();
  }

  async regenerate() {
    if (this.messages.at(-1)?.role === "assistant") this.messages.pop();
    const last = this.messages.pop();
    if (!last) return;
    this.input.value = last.content;
    await this.send();
  }

  async send() {
    const text = this.input.value.trim();
    if (!text || running) return;
    const model = this.assistant ? this.assistant.model : this.modelSelect?.value;
    if (!model) { this.status(t("no_models"), true); return; }
    this.input.value = "";
    this.messages.push({ role: "user", content: text });
    const answer = { role: "assistant", content: "" };
    this.messages.push(answer);
    const controller = new AbortController();
    const run = { controller };
    running = run; // before any await: a second click (Enter, an example question) must not start a second answer
    this.busy(true);
    await this.ensureConversation(model, text);
    this.renderMessages();
    const bodyEl = this.list.lastElementChild.querySelector(".body");
    this.status(t("sending"));
    let frame = 0;
    // while streaming, no syntax highlighting: re-highlighting every code block on every frame is costly
    const paint = () => { frame = 0; clear(bodyEl, renderMarkdown(answer.content, { highlight: false })); this.list.scrollTop = this.list.scrollHeight; };
    let stats = null;
    try {
      await streamNdjson(this.endpoint(), this.requestBody(model), (chunk) => {
        if (chunk.status === "queued") this.status(chunk.queue_position ? t("queued_at", { n: fmtNumber(chunk.queue_position) }) : t("queued"));
        else if (chunk.status === "loading") this.status(t("loading_model"));
        const piece = chunk.message?.content;
        if (piece) {
          if (!answer.content) this.status(t("answering"));
          answer.content += piece;
          if (!frame) frame = requestAnimationFrame(paint);
        }
        if (chunk.done) {
          stats = chunk;
          if (Array.isArray(chunk.citations) && chunk.citations.length) answer.citations = chunk.citations; // what the answer cites
        }
      }, controller.signal);
      if (stats) {
        const seconds = (stats.eval_duration || 0) / 1e9;
        answer.note = t("stats", { tokens: fmtNumber(stats.eval_count || 0), rate: fmtNumber(seconds > 0 ? (stats.eval_count / seconds) : 0, 1) });
      }
      this.status(this.saveError || "", Boolean(this.saveError)); // a failed save must stay visible
    } catch (err) {
      if (err.name === "AbortError") { answer.note = t("stopped"); this.status(t("stopped")); }
      else {
        answer.note = `${t("error")}: ${err.message}`;
        this.status(`${t("error")}: ${err.message}`, true);
        if (!answer.content) this.messages.pop();
      }
    } finally {
      if (frame) cancelAnimationFrame(frame);
      if (running === run) running = null;
      this.busy(false);
      this.renderMessages();
      await this.persist();
      this.refreshQuota();
      this.input.focus();
    }
  }

  stop() { if (running) running.controller.abort(); }

  endpoint() { return this.assistant ? `/assistants/${encodeURIComponent(this.assistant.slug)}/chat` : "/api/chat"; }

  requestBody(model) {
    const messages = this.messages.filter((m, i) => !(i === this.messages.length - 1 && m.role === "assistant" && !m.content))
      .map(({ role, content }) => ({ role, content }));
    if (this.assistant) return { messages, stream: true };
    const system = (this.settings.system || "").trim();
    const temperature = Number.parseFloat(this.settings.temperature ?? ""); // empty: the model's own default (server side)
    const options = Number.isFinite(temperature) ? { temperature } : {};
    const maxTokens = Number.parseInt(this.settings.maxTokens ?? "", 10);
    if (Number.isFinite(maxTokens) && maxTokens > 0) options.num_predict = maxTokens;
    return { model, stream: true, messages: system ? [{ role: "system", content: system }, ...messages] : messages, options };
  }

  async ensureConversation(model, firstText) {
    if (this.conversation) return;
    const title = firstText.length > TITLE_CHARS ? `${firstText.slice(0, TITLE_CHARS - 1)}…` : firstText;
    const body = { title, model, messages: [] };
    if (this.assistant) {
      body.assistant_id = this.assistant.id;
      if (session.store.where === "browser") body.assistant_slug = this.assistant.slug; // the server derives it
    }
    try {
      this.conversation = await session.store.create(body); // carries assistant_slug (the server adds it)
      history.replaceState(null, "", `#/c/${encodeURIComponent(this.conversation.id)}`);
      await this.renderSidebar();
    } catch (err) {
      this.saveError = `${t("save_failed")}: ${err.message}`;
      this.status(this.saveError, true);
    }
  }

  async persist() {
    if (!this.conversation) return;
    // the citations go along; the server's history keeps only role and content (store.js)
    const messages = this.messages.filter((m) => m.content)
      .map(({ role, content, citations }) => (citations ? { role, content, citations } : { role, content }));
    try {
      await session.store.saveMessages(this.conversation.id, messages);
      await this.renderSidebar();
    } catch (err) { this.status(`${t("save_failed")}: ${err.message}`, true); }
  }

  async rename(c) {
    const title = window.prompt(t("rename_prompt"), c.title || "");
    if (title === null || !title.trim()) return;
    try {
      await session.store.rename(c.id, title.trim().slice(0, 200));
      await this.renderSidebar();
    } catch (err) { this.status(`${t("error")}: ${err.message}`, true); }
  }

  async remove(c) {
    if (!window.confirm(t("delete_confirm", { title: c.title }))) return;
    try {
      await session.store.remove(c.id);
      if (String(this.conversation?.id) === String(c.id)) { location.hash = "#/"; return; }
      await this.renderSidebar();
    } catch (err) { this.status(`${t("error")}: ${err.message}`, true); }
  }

  busy(on) {
    this.sendButton.hidden = on;
    this.stopButton.hidden = !on;
    if (on) this.stopButton.focus();
  }

  status(text, isError = false) {
    this.statusLine.textContent = text;
    this.statusLine.classList.toggle("error", isError);
  }

  async refreshQuota() {
    if (!session.me) return;
    try {
      const usage = await api("/me/usage?days=1");
      const parts = (usage.quotas || []).filter((q) => q.limit.startsWith("tokens")).map((q) =>
        t(`quota_${q.limit}`, { remaining: fmtNumber(q.remaining), value: fmtNumber(q.value), reset: fmtDateTime(q.resets_at) }));
      this.quota.textContent = parts.length ? parts.join(" · ") : t("quota_none");
    } catch { this.quota.textContent = ""; }
  }
}

function loadSettings() {
  try { return JSON.parse(storage.getItem("flexi.chat.settings") || "{}"); } catch { return {}; }
}
function saveSettings(s) { storage.setItem("flexi.chat.settings", JSON.stringify(s)); }
