// Flexi's web interface: boot (config → sign-in → terms), the page frame and the router.
import { api, ApiError, setCsrf } from "./api.js";
import { h, clear } from "./dom.js";
import { t, setLocale, locale, detectLocale } from "./i18n.js";
import { BrowserStore, ServerStore } from "./store.js";
import { renderMarkdown } from "./markdown.js";
import { chatView, stopStreaming } from "./chat.js";
import { assistantsView } from "./assistants.js";
import { templatesView } from "./templates.js";
import { adminView } from "./admin.js";
import { accountView } from "./account.js";

import { session, isTeacher, isAdmin } from "./state.js";

const root = document.getElementById("app");

async function boot() {
  session.config = await api("/ui/config");
  setLocale(detectLocale(session.config.default_locale));
  if (session.config.auth === "on") {
    try {
      session.me = await api("/me");
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) return loginView();
      if (err instanceof ApiError && err.status === 403 && err.body?.code === "terms_not_accepted") {
        session.me = null;
        return termsView();
      }
      throw err;
    }
    setCsrf(session.me.csrf_token);
    if (session.me.terms.version && !session.me.terms.accepted) return termsView();
  }
  const history = session.config.chat_history === "server" && session.me ? "server" : "browser";
  session.store = history === "server" ? new ServerStore() : new BrowserStore(session.me?.subject);
  await frame();
}

// ---- sign-in -----------------------------------------------------------------------------
function loginView() {
  document.title = `${t("sign_in")} · Flexi`;
  const user = h("input", { id: "login-user", name: "username", autocomplete: "username", required: true });
  const pass = h("input", { id: "login-pass", name: "password", type: "password", autocomplete: "current-password", required: true });
  const error = h("p", { class: "error", role: "alert" });
  const form = h("form", { onsubmit: async (ev) => {
    ev.preventDefault();
    error.textContent = "";
    try {
      const out = await api("/auth/password", { method: "POST", body: { username: user.value, password: pass.value } });
      setCsrf(out.csrf_token);
      location.hash = location.hash || "#/";
      await restart();
    } catch (err) { error.textContent = err.message; pass.select(); }
  } },
  h("div", { class: "field" }, h("label", { for: "login-user" }, t("username")), user),
  h("div", { class: "field" }, h("label", { for: "login-pass" }, t("password")), pass),
  h("button", { type: "submit" }, t("sign_in")), error);
  const sso = session.config.oidc
    ? h("p", {}, h("a", { class: "button", href: `/auth/login?next=${encodeURIComponent("/" + location.hash)}` }, t("sign_in_sso")))
    : null;
  clear(root, langSwitch(), h("main", { id: "main", class: "center-box" },
    h("h1", {}, t("welcome_title")), h("p", {}, t("welcome_text")), sso,
    sso ? h("h2", {}, t("local_account")) : null, form));
  root.setAttribute("aria-busy", "false");
  user.focus();
}

async function termsView() {
  document.title = `${t("terms_title")} · Flexi`;
  const terms = await api(`/terms?lang=${locale()}`);
  const body = terms.text ? h("div", { class: "terms-text", tabindex: "0", role: "region", "aria-label": t("terms_title") },
    renderMarkdown(terms.text)) : h("p", {}, h("a", { href: terms.url, target: "_blank", rel: "noopener" }, t("terms_read")));
  const error = h("p", { class: "error", role: "alert" });
  const accept = h("button", { type: "button", onclick: async () => {
    try {
      if (!session.me) session.me = await api("/me");
      setCsrf(session.me.csrf_token);
      await api("/me/terms", { method: "POST", body: { version: terms.version } });
      await restart();
    } catch (err) { error.textContent = err.message; }
  } }, t("terms_accept"));
  clear(root, langSwitch(), h("main", { id: "main", class: "center-box" },
    h("h1", {}, t("terms_title")),
    h("p", {}, t("terms_intro", { version: terms.version })), body, privacyNotice(), accept, " ",
    h("button", { type: "button", class: "secondary", onclick: logout }, t("sign_out")), error));
  root.setAttribute("aria-busy", "false");
}

// Where prompts are processed: each external backend (a cloud provider) by name and host, then the rest.
function placesNotice(external) {
  if (!external.length) return [h("li", {}, t("privacy_local"))];
  return [...external.map((b) => h("li", { class: "privacy-external" }, t("privacy_external", { name: b.name, host: b.host }))),
    h("li", {}, t("privacy_local_rest"))];
}

// What Flexi itself stores, generated from the server's configuration (the operator's terms come first).
function privacyNotice() {
  const p = session.config.privacy || {};
  const history = session.config.chat_history === "server"
    ? t("privacy_history_server", { days: session.config.chat_retention_days }) : t("privacy_history_browser");
  return h("section", { "aria-labelledby": "privacy-heading" }, h("h2", { id: "privacy-heading" }, t("privacy_title")),
    h("ul", {}, ...placesNotice(p.external_backends || []), h("li", {}, history),
      h("li", {}, t("privacy_usage", { days: p.usage_retention_days })),
      h("li", {}, p.content_log_purpose ? t("privacy_content_on", { purpose: p.content_log_purpose, days: p.content_log_retention_days })
        : t("privacy_content_off")),
      h("li", {}, t("privacy_rights"))));
}

async function logout() {
  stopStreaming();
  try { await api("/auth/logout", { method: "POST" }); } catch { /* signed out anyway */ }
  setCsrf(null);
  session.me = null;
  location.hash = "#/";
  await restart();
}

async function restart() {
  root.setAttribute("aria-busy", "true");
  try { await boot(); } catch (err) { fatal(err); }
}

function fatal(err) {
  clear(root, h("main", { id: "main", class: "center-box" }, h("h1", {}, t("error_title")),
    h("p", { role: "alert" }, err.message || String(err)), h("button", { onclick: restart }, t("retry"))));
  root.setAttribute("aria-busy", "false");
}

// ---- frame ---------------------------------------------------------------------------
function langSwitch() {
  const select = h("select", { id: "lang-switch", "aria-label": t("language"), onchange: async () => {
    setLocale(select.value, true);
    if (session.me) { try { await api("/me", { method: "PATCH", body: { locale: select.value } }); } catch { /* keep local */ } }
    await restart();
  } }, h("option", { value: "de", selected: locale() === "de", lang: "de" }, "Deutsch"),
  h("option", { value: "en", selected: locale() === "en", lang: "en" }, "English"));
  return h("div", { class: "lang" }, select);
}

async function frame() {
  const nav = h("nav", { "aria-label": t("main_nav") },
    h("a", { href: "#/", "data-route": "chat" }, t("nav_chat")),
    isTeacher() ? h("a", { href: "#/assistants", "data-route": "assistants" }, t("nav_assistants")) : null,
    h("a", { href: "#/templates", "data-route": "templates" }, t("nav_templates")),
    isAdmin() ? h("a", { href: "#/admin/users", "data-route": "admin" }, t("nav_admin")) : null,
    session.me ? h("a", { href: "#/account", "data-route": "account" }, t("nav_account")) : null);
  const who = session.me ? h("span", { class: "hint" }, session.me.display_name || session.me.subject) : null;
  const out = session.me ? h("button", { type: "button", class: "secondary", onclick: logout }, t("sign_out")) : null;
  const header = h("header", { class: "topbar" },
    h("a", { class: "brand", href: "#/" }, h("img", { src: "/ui/assets/favicon.svg", alt: "" }), "Flexi"),
    nav, h("div", { class: "right" }, langSwitch(), who, out));
  const outlet = h("div", { id: "outlet" });
  clear(root, header, outlet);
  root.setAttribute("aria-busy", "false");
  window.onhashchange = () => route(outlet, nav);
  await route(outlet, nav);
}

let routeCount = 0; // the newest navigation wins: a slower, older view must not draw over it

async function route(outlet, nav) {
  const path = location.hash.replace(/^#/, "") || "/";
  const mine = ++routeCount;
  stopStreaming();
  const section = path.startsWith("/assistants") ? "assistants" : path.startsWith("/templates") ? "templates"
    : path.startsWith("/admin") ? "admin"
    : path.startsWith("/account") ? "account" : "chat";
  for (const a of nav.querySelectorAll("a")) {
    if (a.dataset.route === section) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  outlet.setAttribute("aria-busy", "true");
  delete outlet.dataset.ready;
  try {
    if (section === "assistants") await assistantsView(outlet, path);
    else if (section === "templates") await templatesView(outlet, path);
    else if (section === "admin") await adminView(outlet, path);
    else if (section === "account") await accountView(outlet);
    else await chatView(outlet, path, () => mine === routeCount);
  } catch (err) {
    if (mine !== routeCount) return;
    if (err instanceof ApiError && err.status === 401) return restart();
    if (err instanceof ApiError && err.status === 403 && err.body?.code === "terms_not_accepted") return termsView();
    clear(outlet, h("main", { id: "main", class: "page" }, h("h1", {}, t("error_title")),
      h("p", { role: "alert" }, err.message || String(err))));
  } finally {
    if (mine === routeCount) { // the view for this address is drawn (tests and assistive tech can rely on it)
      outlet.setAttribute("aria-busy", "false");
      outlet.dataset.ready = path;
    }
  }
}

// The skip link jumps to the content without touching the address (the hash is the router's).
document.querySelector(".skip-link")?.addEventListener("click", (ev) => {
  ev.preventDefault();
  const main = document.getElementById("main");
  if (main) { main.setAttribute("tabindex", "-1"); main.focus(); }
});

restart();
