// Groups and courses in the administration: one code path for both, as in the REST API
// (/admin/groups, /admin/courses). A list with search, create and delete; a page per entry
// with its members, where members are added by user name and removed. Course members also
// have a course role (teacher, tutor, student), set when adding and changeable in the list.
import { api } from "./api.js";
import { h, clear, field } from "./dom.js";
import { t } from "./i18n.js";
import { table, searchBar, userPicker, deleteButton, focusIn } from "./admin_parts.js";

const COURSE_ROLES = ["student", "tutor", "teacher"];

// Everything that differs between the two: the address, the answer's list key and the texts.
const KINDS = {
  groups: { path: "/admin/groups", list: "groups", courseRoles: false, text: {
    tab: () => t("admin_groups"), create: () => t("group_create"), search: () => t("groups_search"),
    title: (name) => t("group_title", { name }), remove: (name) => t("group_delete_named", { name }),
    confirm: (name) => t("group_delete_confirm", { name }) } },
  courses: { path: "/admin/courses", list: "courses", courseRoles: true, text: {
    tab: () => t("admin_courses"), create: () => t("course_create"), search: () => t("courses_search"),
    title: (name) => t("course_title", { name }), remove: (name) => t("course_delete_named", { name }),
    confirm: (name) => t("course_delete_confirm", { name }) } },
};

// The tab for `kind` ("groups" or "courses"): the list, or one entry when the address names it.
export function memberSetTab(kind) {
  const k = KINDS[kind];
  return (body, id) => (id ? entry(body, k, kind, id) : list(body, k, kind, ""));
}

async function list(body, k, kind, search, focus) {
  const query = search ? `&search=${encodeURIComponent(search)}` : "";
  const rows = (await api(`${k.path}?limit=500${query}`))[k.list] || [];
  const error = h("p", { class: "error", role: "alert" });
  const redraw = (s, f) => list(body, k, kind, s, f);
  const lines = rows.map((x) => h("tr", {},
    h("td", {}, h("a", { href: `#/admin/${kind}/${x.id}` }, x.name)), h("td", {}, x.title || ""), h("td", {}, String(x.members ?? 0)),
    h("td", {}, deleteButton(k.text.remove(x.name), k.text.confirm(x.name), async () => {
      await api(`${k.path}/${x.id}`, { method: "DELETE" });
      await redraw(search, `#${kind}-search`);
    }, error))));
  const name = h("input", { id: `${kind}-new-name`, required: true, maxlength: "100" });
  const title = h("input", { id: `${kind}-new-title`, maxlength: "255" });
  const create = h("form", { onsubmit: async (ev) => {
    ev.preventDefault();
    const payload = { name: name.value.trim() };
    if (title.value.trim()) payload.title = title.value.trim();
    try { await api(k.path, { method: "POST", body: payload }); await redraw(search, `#${kind}-new-name`); }
    catch (err) { error.textContent = err.message; }
  } }, h("h2", {}, k.text.create()), h("div", { class: "toolbar" }, field(t("name"), name), field(t("title"), title),
    h("button", { type: "submit" }, t("create"))));
  clear(body, error, searchBar(`${kind}-search`, k.text.search(), search, (s) => redraw(s, `#${kind}-search`)),
    table([t("name"), t("title"), t("members"), ""], lines, k.text.tab()), create);
  if (focus) focusIn(body, focus);
}

async function entry(body, k, kind, id, focus) {
  const x = await api(`${k.path}/${encodeURIComponent(id)}`);
  const picker = await userPicker(`${kind}-member`);
  const error = h("p", { class: "error", role: "alert" });
  const redraw = (f) => entry(body, k, kind, id, f);
  const member = (u) => `${k.path}/${x.id}/members/${u.id}`;
  const lines = (x.users || []).map((u) => {
    const cells = [h("td", {}, u.subject), h("td", {}, u.display_name || ""), h("td", {}, t(`role_${u.role}`))];
    if (k.courseRoles) {
      const select = h("select", { "aria-label": t("course_role_of", { name: u.subject }), onchange: async () => {
        try { await api(member(u), { method: "PUT", body: { role: select.value } }); error.textContent = ""; }
        catch (err) { error.textContent = err.message; }
      } }, COURSE_ROLES.map((r) => h("option", { value: r, selected: r === u.course_role }, t(`course_role_${r}`))));
      cells.push(h("td", {}, select));
    }
    cells.push(h("td", {}, h("button", { type: "button", class: "secondary", "aria-label": t("member_remove_named", { user: u.subject, name: x.name }),
      onclick: async () => {
        try { await api(member(u), { method: "DELETE" }); await redraw(`#${kind}-member`); }
        catch (err) { error.textContent = err.message; }
      } }, t("member_remove"))));
    return h("tr", {}, cells);
  });
  const role = k.courseRoles ? h("select", { id: `${kind}-member-role` }, COURSE_ROLES.map((r) => h("option", { value: r }, t(`course_role_${r}`)))) : null;
  const add = h("form", { onsubmit: async (ev) => {
    ev.preventDefault();
    try {
      const user = await picker.resolve();
      await api(member(user), { method: "PUT", body: role ? { role: role.value } : undefined });
      await redraw(`#${kind}-member`);
    } catch (err) { error.textContent = err.message; }
  } }, h("h3", {}, t("member_add")), h("div", { class: "toolbar" }, field(t("username"), picker.input), picker.options,
    role ? field(t("course_role"), role) : null, h("button", { type: "submit" }, t("member_add"))));
  const headers = [t("username"), t("display_name"), t("role"), k.courseRoles ? t("course_role") : null, ""].filter((v) => v !== null);
  const remove = deleteButton(k.text.remove(x.name), k.text.confirm(x.name), async () => {
    await api(`${k.path}/${x.id}`, { method: "DELETE" });
    location.hash = `#/admin/${kind}`;
  }, error, true);
  clear(body, h("p", {}, h("a", { href: `#/admin/${kind}` }, t("back_to_list"))),
    h("h2", {}, k.text.title(x.name)), x.title ? h("p", {}, x.title) : null, error,
    h("h3", {}, t("members")), table(headers, lines, t("members")), add, h("div", { class: "toolbar" }, remove));
  if (focus) focusIn(body, focus);
}
