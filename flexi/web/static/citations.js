// The sources of an answer from course documents: the answer's [n] markers become buttons, a
// "Sources" list under the answer names document and page, and either opens a dialog with that
// page's passages, the cited one marked. The citations come from the server (the final chunk of
// /assistants/{slug}/chat), which lists only the passages the answer really cites.
import { api } from "./api.js";
import { h, clear, uid } from "./dom.js";
import { t, fmtNumber } from "./i18n.js";

const MARKER = /\[(\d{1,3})\]/g;
const HAS_MARKER = /\[\d{1,3}\]/; // without /g: test() keeps no state

export function sourceLabel(c) {
  return c.page !== null && c.page !== undefined
    ? t("source_page", { document: c.document, page: fmtNumber(c.page) }) : c.document;
}

// Replace [n] in the answer's text (not in code) by a button opening source n, for the cited n only.
export function linkMarkers(fragment, citations, open) {
  const byN = new Map(citations.map((c) => [Number(c.n), c]));
  const walker = document.createTreeWalker(fragment, NodeFilter.SHOW_TEXT, {
    acceptNode: (node) => (node.parentElement?.closest("pre, code, a, button") ? NodeFilter.FILTER_REJECT : NodeFilter.FILTER_ACCEPT),
  });
  const nodes = [];
  for (let node = walker.nextNode(); node; node = walker.nextNode()) if (HAS_MARKER.test(node.data)) nodes.push(node);
  for (const node of nodes) {
    const parts = [];
    let last = 0;
    for (const m of node.data.matchAll(MARKER)) {
      const c = byN.get(Number(m[1]));
      if (!c) continue;
      parts.push(node.data.slice(last, m.index), h("sup", {}, h("button", { type: "button", class: "cite",
        "aria-label": t("source_open", { n: m[1], source: sourceLabel(c) }), onclick: () => open(c) }, m[0])));
      last = m.index + m[0].length;
    }
    if (!parts.length) continue;
    parts.push(node.data.slice(last));
    node.replaceWith(...parts.map((p) => (typeof p === "string" ? document.createTextNode(p) : p)));
  }
  return fragment;
}

export function sourcesList(citations, open) {
  const id = uid("sources");
  return h("section", { class: "sources", "aria-labelledby": id },
    h("h3", { id }, t("sources")),
    h("ol", {}, citations.map((c) => h("li", { value: String(c.n) },
      h("button", { type: "button", class: "link", "data-document-id": String(c.document_id), "data-page": c.page ?? "",
        onclick: () => open(c) }, sourceLabel(c))))));
}

function squash(text) { return String(text || "").replace(/\s+/g, " ").trim(); }

// Which of the page's passages the answer cited: the same text, else the one holding its beginning
// (a page re-read after the citation may be cut differently).
function citedIndex(passages, text) {
  const wanted = squash(text);
  const exact = passages.findIndex((p) => squash(p.text) === wanted);
  return exact >= 0 ? exact : passages.findIndex((p) => wanted && squash(p.text).includes(wanted.slice(0, 80)));
}

// A modal dialog with the cited page (GET …/documents/{id}/pages/{n}); the native <dialog> keeps focus
// inside while open, Escape closes it, and focus returns to what opened it.
export function openPassage(slug, c) {
  const opener = document.activeElement;
  const titleId = uid("passage-title");
  const body = h("div", { class: "passage-body" }, h("p", { class: "hint", role: "status" }, t("source_loading")));
  const dialog = h("dialog", { class: "passage-dialog", "aria-labelledby": titleId },
    h("div", { class: "dialog-head" }, h("h2", { id: titleId }, sourceLabel(c)),
      h("button", { type: "button", class: "secondary", onclick: () => dialog.close() }, t("close"))),
    body);
  dialog.addEventListener("close", () => {
    dialog.remove();
    if (opener && opener.isConnected) opener.focus();
  });
  document.body.append(dialog);
  dialog.showModal();
  const show = (passages) => {
    let cited = null;
    const at = citedIndex(passages, c.text);
    const items = passages.map((p, i) => {
      const hit = i === at;
      const text = hit ? h("mark", {}, p.text) : p.text;
      const item = h("section", { class: hit ? "passage cited" : "passage" },
        p.heading ? h("h3", {}, p.heading) : null,
        hit ? h("p", { class: "hint" }, t("source_cited")) : null,
        h("p", { class: "plain" }, text));
      if (hit) cited = item;
      return item;
    });
    clear(body, items);
    if (cited) cited.scrollIntoView({ block: "nearest" });
  };
  if (c.page === null || c.page === undefined) { // a format without pages: the cited passage is what there is
    show([{ heading: "", text: c.text }]);
    return dialog;
  }
  api(`/assistants/${encodeURIComponent(slug)}/documents/${encodeURIComponent(c.document_id)}/pages/${encodeURIComponent(c.page)}`)
    .then((page) => show(page.passages || []))
    .catch((err) => {
      // the document may have been deleted or replaced since the answer: show what the answer cited
      clear(body, h("p", { class: "error", role: "alert" }, err.message), h("section", { class: "passage cited" },
        h("p", { class: "hint" }, t("source_cited")), h("p", { class: "plain" }, h("mark", {}, c.text))));
    });
  return dialog;
}
