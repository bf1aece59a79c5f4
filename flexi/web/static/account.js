// "My data": profile, usage and quotas, personal API keys, export (GDPR Art. 15) and erasure (Art. 17).
import { api } from "./api.js";
import { h, clear, field } from "./dom.js";
import { t, fmtNumber, fmtDateTime } from "./i18n.js";
import { session } from "./state.js";
import { storage } from "./storage.js";

export async function accountView(outlet) {
  const main = h("main", { id: "main", class: "page" });
  clear(outlet, main);
  if (!session.me) {
    clear(main, h("h1", {}, t("account_title")), h("p", {}, t("account_no_user")));
    return;
  }
  const [usage, keys] = await Promise.all([api("/me/usage?days=30"), api("/me/keys")]);
  const me = session.me;
  const quotaRows = (usage.quotas || []).map((q) => h("tr", {}, h("td", {}, t(`limit_${q.limit}`)), h("td", {}, t(`quota_kind_${q.applies_to}`)),
    h("td", {}, fmtNumber(q.used)), h("td", {}, fmtNumber(q.value)), h("td", {}, fmtDateTime(q.resets_at))));
  const keyArea = h("div");
  renderKeys(keyArea, keys.keys || []);
  const error = h("p", { class: "error", role: "alert" });
  const erase = h("button", { type: "button", class: "danger", onclick: async () => {
    if (!window.confirm(t("erase_confirm"))) return;
    try {
      await api("/me?confirm=true", { method: "DELETE" });
      storage.removeItem(`flexi.conversations.${me.subject}`);
      location.hash = "#/";
      location.reload();
    } catch (err) { error.textContent = err.message; }
  } }, t("erase_account"));
  const exportButton = h("button", { type: "button", class: "secondary", onclick: async () => {
    try {
      const data = await api("/me/export");
      const local = storage.getItem(`flexi.conversations.${me.subject}`);
      if (local) data.browser_conversations = JSON.parse(local);  // what only this browser holds
      const blob = new Blob([JSON.stringify(data, null, 2)], { type: "application/json" });
      const url = URL.createObjectURL(blob);
      const link = h("a", { href: url, download: "flexi-export.json" });
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60_000); // the download has its copy; free the memory
    } catch (err) { error.textContent = err.message; }
  } }, t("export_data"));
  clear(main, h("h1", {}, t("account_title")),
    h("p", {}, `${me.display_name || me.subject} · ${t(`role_${me.role}`)}`),
    (me.courses || []).length ? h("p", {}, `${t("courses")}: ${me.courses.map((c) => c.title || c.name).join(", ")}`) : null,
    h("h2", {}, t("quotas_title")),
    quotaRows.length ? h("table", {}, h("caption", { class: "visually-hidden" }, t("quotas_title")),
      h("thead", {}, h("tr", {}, [t("limit"), t("applies_to"), t("used"), t("limit_value"), t("resets")].map((x) => h("th", { scope: "col" }, x)))),
      h("tbody", {}, quotaRows)) : h("p", {}, t("quota_none")),
    h("h2", {}, t("keys_title")), h("p", { class: "hint" }, t("keys_intro")), keyArea,
    h("h2", {}, t("my_data")), h("p", {}, t("my_data_intro")), h("div", { class: "toolbar" }, exportButton, erase), error);
}

function renderKeys(area, keys) {
  const error = h("p", { class: "error", role: "alert" });
  const created = h("div", { "aria-live": "polite" });
  const rows = keys.filter((k) => k.state === "active").map((k) => h("tr", {}, h("td", {}, h("code", {}, k.prefix)), h("td", {}, k.name || ""),
    h("td", {}, fmtDateTime(k.created_at)), h("td", {}, k.expires_at ? fmtDateTime(k.expires_at) : t("never")),
    h("td", {}, h("button", { type: "button", class: "danger", "aria-label": t("revoke_named", { prefix: k.prefix }), onclick: async () => {
      try { await api(`/me/keys/${k.id}`, { method: "DELETE" }); renderKeys(area, (await api("/me/keys")).keys || []); }
      catch (err) { error.textContent = err.message; }
    } }, t("revoke")))));
  const name = h("input", { id: "key-name", maxlength: "100" });
  const days = h("input", { id: "key-days", type: "number", min: "1", max: "365", value: "90" });
  const form = h("form", { onsubmit: async (ev) => {
    ev.preventDefault();
    try {
      const out = await api("/me/keys", { method: "POST", body: { name: name.value.trim(), expires_in_days: Number(days.value) } });
      renderKeys(area, (await api("/me/keys")).keys || []);
      area.prepend(h("div", { class: "card", role: "status" }, h("p", {}, t("key_created")), h("p", {}, h("code", { class: "plain" }, out.key))));
    } catch (err) { error.textContent = err.message; }
  } }, h("div", { class: "toolbar" }, field(t("name"), name), field(t("expires_in_days"), days), h("button", { type: "submit" }, t("key_create"))));
  clear(area, created, rows.length ? h("table", {}, h("caption", { class: "visually-hidden" }, t("keys_title")),
    h("thead", {}, h("tr", {}, [t("key_prefix"), t("name"), t("created"), t("expires"), ""].map((x) => h("th", { scope: "col" }, x || h("span", { class: "visually-hidden" }, t("actions")))))),
    h("tbody", {}, rows)) : h("p", { class: "hint" }, t("nothing_yet")), form, error);
}
