// An assistant's course documents in its editor (teachers of the course and admins): upload files
// (picker or drag and drop) or add a URL, watch them being read, delete them. The server parses and
// indexes in the background, so the list is polled while anything is queued or processing.
import { api } from "./api.js";
import { h, clear } from "./dom.js";
import { t, fmtNumber, fmtBytes } from "./i18n.js";

const ACCEPT = ".pdf,.docx,.pptx,.odt,.html,.htm,.md,.markdown,.txt";
const FILES_PER_REQUEST = 10; // the server's limit per upload request (flexi/rag/library.py)
const POLL_MS = 1500;
const STATUS_TEXT = { queued: "doc_status_queued", processing: "doc_status_processing", ready: "doc_status_ready", failed: "doc_status_failed" };
// what a refused upload means, next to the server's own message
const REFUSED = { 403: "doc_forbidden", 413: "doc_too_large", 415: "doc_unsupported" };

export function explainUploadError(err) {
  const hint = REFUSED[err.status];
  if (!hint) return err.message;
  return err.message && err.message !== `HTTP ${err.status}` ? `${t(hint)} ${err.message}` : t(hint);
}

export function documentsSection(assistant) {
  const base = `/assistants/${encodeURIComponent(assistant.slug)}/documents`;
  const files = h("input", { id: "doc-files", type: "file", multiple: true, accept: ACCEPT, "aria-describedby": "doc-files-hint",
    onchange: () => upload([...files.files]) });
  const url = h("input", { id: "doc-url", type: "url", inputmode: "url", maxlength: "2048", placeholder: "https://…",
    autocomplete: "off" });
  const status = h("p", { class: "status-line", role: "status", "aria-live": "polite" });
  const error = h("div", { class: "error", role: "alert" });
  const list = h("div", { "data-testid": "documents-list" });
  let timer = 0;
  let polled = false; // the first call runs before the section is in the page

  const drop = h("div", { class: "dropzone" },
    h("label", { for: "doc-files" }, t("doc_files")), files,
    h("span", { class: "hint", id: "doc-files-hint" }, t("doc_files_hint")));

  const section = h("section", { class: "documents", "aria-labelledby": "docs-heading" },
    h("h2", { id: "docs-heading" }, t("documents")), h("p", { class: "hint" }, t("documents_intro")),
    drop,
    h("form", { class: "toolbar", onsubmit: (ev) => { ev.preventDefault(); addUrl(); } },
      h("div", { class: "field" }, h("label", { for: "doc-url" }, t("doc_url")), url),
      h("button", { type: "submit", class: "secondary" }, t("doc_url_add"))),
    status, error, list);
  // the whole section takes dropped files: a file dropped just beside the box must not replace the page
  section.addEventListener("dragover", (ev) => { ev.preventDefault(); drop.classList.add("over"); });
  section.addEventListener("dragleave", (ev) => { if (!section.contains(ev.relatedTarget)) drop.classList.remove("over"); });
  section.addEventListener("drop", (ev) => {
    ev.preventDefault();
    drop.classList.remove("over");
    upload([...(ev.dataTransfer?.files || [])]);
  });

  function say(text) { status.textContent = text; }

  async function upload(chosen) {
    if (!chosen.length) return;
    error.replaceChildren();
    say(t("doc_uploading", { n: fmtNumber(chosen.length) }));
    const problems = [];
    for (let i = 0; i < chosen.length; i += FILES_PER_REQUEST) {
      const batch = chosen.slice(i, i + FILES_PER_REQUEST);
      const form = new FormData();
      for (const f of batch) form.append("file", f, f.name);
      try { await api(base, { method: "POST", form }); } catch (err) {
        problems.push(`${batch.map((f) => `${f.name} (${fmtBytes(f.size)})`).join(", ")}: ${explainUploadError(err)}`);
      }
    }
    files.value = "";
    say(problems.length ? "" : t("doc_uploaded", { n: fmtNumber(chosen.length) }));
    clear(error, problems.map((p) => h("p", {}, p)));
    await refresh();
  }

  async function addUrl() {
    const value = url.value.trim();
    if (!value) { url.focus(); return; }
    error.replaceChildren();
    say(t("doc_fetching"));
    try {
      await api(base, { method: "POST", body: { url: value } });
      url.value = "";
      say(t("doc_uploaded", { n: fmtNumber(1) }));
    } catch (err) { say(""); clear(error, h("p", {}, `${value}: ${explainUploadError(err)}`)); }
    await refresh();
  }

  async function remove(doc) {
    if (!window.confirm(t("doc_delete_confirm", { name: doc.name }))) return;
    try {
      await api(`${base}/${encodeURIComponent(doc.id)}`, { method: "DELETE" });
      say(t("doc_deleted", { name: doc.name }));
    } catch (err) { clear(error, h("p", {}, err.message)); }
    await refresh();
  }

  async function refresh() {
    clearTimeout(timer);
    if (polled && !section.isConnected) return; // the editor was left: stop polling
    polled = true;
    let docs;
    try { docs = (await api(base)).documents || []; } catch (err) { clear(error, h("p", {}, err.message)); return; }
    render(docs);
    if (docs.some((d) => d.status === "queued" || d.status === "processing")) timer = setTimeout(refresh, POLL_MS);
    else timer = 0;
  }

  function render(docs) {
    const ready = docs.filter((d) => d.status === "ready").length;
    const summary = docs.length ? t("doc_summary", { ready: fmtNumber(ready), total: fmtNumber(docs.length) }) : "";
    if (!docs.length) { clear(list, h("p", { class: "hint" }, t("doc_none"))); return; }
    const rows = docs.map((d) => h("tr", { "data-status": d.status },
      h("th", { scope: "row" }, d.source_url ? h("a", { href: d.source_url, target: "_blank", rel: "noopener noreferrer" }, d.name) : d.name),
      h("td", { class: d.status === "failed" ? "error" : d.status === "ready" ? "ok" : null },
        t(STATUS_TEXT[d.status] || "unknown"), d.status === "failed" && d.error ? h("span", { class: "doc-error" }, `: ${d.error}`) : null),
      h("td", {}, d.pages ? fmtNumber(d.pages) : "–"),
      h("td", {}, d.status === "ready" ? fmtNumber(d.chunks) : "–"),
      h("td", {}, h("button", { type: "button", class: "link", "aria-label": t("doc_delete_named", { name: d.name }),
        onclick: () => remove(d) }, t("delete")))));
    clear(list, h("p", { class: "hint" }, summary), h("table", { class: "documents-table" },
      h("caption", { class: "visually-hidden" }, t("documents")),
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, t("name")), h("th", { scope: "col" }, t("status")),
        h("th", { scope: "col" }, t("doc_pages")), h("th", { scope: "col" }, t("doc_chunks")), h("th", { scope: "col" }, t("actions")))),
      h("tbody", {}, rows)));
  }

  refresh();
  return section;
}
