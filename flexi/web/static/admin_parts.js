// Pieces the administration tabs share: the table, the search bar, picking a user by name,
// and deleting after a confirmation. Kept apart so every tab looks and behaves the same.
import { api } from "./api.js";
import { h } from "./dom.js";
import { t } from "./i18n.js";

// A table with a (hidden) caption for screen readers; a hint instead when there are no rows.
export function table(headers, rows, caption) {
  if (!rows.length) return h("p", { class: "hint" }, t("nothing_yet"));
  return h("table", {}, h("caption", { class: "visually-hidden" }, caption),
    h("thead", {}, h("tr", {}, headers.map((x) => h("th", { scope: "col" }, x || h("span", { class: "visually-hidden" }, t("actions")))))),
    h("tbody", {}, rows));
}

// A search form (Enter or the button): onSearch gets the trimmed text, "" for all.
export function searchBar(id, label, value, onSearch) {
  const input = h("input", { id, type: "search", value: value || "", maxlength: "255" });
  return h("form", { role: "search", class: "toolbar", onsubmit: (ev) => { ev.preventDefault(); onSearch(input.value.trim()); } },
    h("div", { class: "field" }, h("label", { for: id }, label), input),
    h("button", { type: "submit", class: "secondary" }, t("search")));
}

// A user-name input that suggests the known users; resolve() turns the typed name into a user.
export async function userPicker(id) {
  const list = (await api("/admin/users?limit=500")).users || [];
  const listId = `${id}-users`;
  const input = h("input", { id, list: listId, required: true, maxlength: "255", autocomplete: "off" });
  const options = h("datalist", { id: listId }, list.map((u) => h("option", { value: u.subject }, u.display_name || u.subject)));
  async function resolve() {
    const name = input.value.trim();
    const known = list.find((u) => u.subject === name);
    if (known) return known;
    const found = (await api(`/admin/users?limit=100&search=${encodeURIComponent(name)}`)).users || [];
    const user = found.find((u) => u.subject === name);
    if (!user) throw new Error(t("user_not_found", { name }));
    return user;
  }
  return { input, options, resolve };
}

// A danger button that asks first and then calls action; errors go to the tab's alert.
// In a table row it reads "Delete" (the label names the row); alone it shows its whole label.
export function deleteButton(label, question, action, error, alone = false) {
  return h("button", { type: "button", class: "danger", "aria-label": alone ? null : label, onclick: async () => {
    if (!window.confirm(question)) return;
    try { await action(); } catch (err) { error.textContent = err.message; }
  } }, alone ? label : t("delete"));
}

// After a tab redraws, put the keyboard focus back where the user works next.
export function focusIn(body, selector) {
  const el = body.querySelector(selector);
  if (el) el.focus();
}
