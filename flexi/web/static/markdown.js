// Model output is untrusted. Markdown → HTML (marked) → sanitized (DOMPurify) → DOM.
// No raw HTML survives, links only to http(s)/mailto and open in a new tab without
// referrer, images are never loaded (a remote image would tell a third party who reads
// what); they become a plain link the user may follow. Code is highlighted locally.
import { marked } from "./vendor/marked.esm.js";
import DOMPurify from "./vendor/purify.es.mjs";
import hljs from "./vendor/highlight.min.js";
import { t } from "./i18n.js";

marked.use({ gfm: true, breaks: false });
marked.use({ renderer: { html(token) { return escapeHtml(token.raw || token.text || ""); } } });

function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}

const SAFE_URL = /^(?:https?:|mailto:|#)/i;
const purifier = DOMPurify(window);
purifier.addHook("uponSanitizeElement", (node, data) => {
  if (data.tagName === "img") {
    const src = node.getAttribute("src") || "";
    const alt = node.getAttribute("alt") || src;
    const replacement = document.createElement("span");
    replacement.className = "blocked-image";
    replacement.textContent = `[${t("image_not_loaded")}: ${alt}]`;
    if (SAFE_URL.test(src)) {
      const link = document.createElement("a");
      link.setAttribute("href", src);
      link.textContent = ` ${src}`;
      replacement.append(link);
    }
    node.replaceWith(replacement);
  }
});
purifier.addHook("afterSanitizeAttributes", (node) => {
  // class only for code languages (marked's `language-x`): model output must not borrow the page's own
  // classes (e.g. to hide text or dress up as a button)
  if (node.hasAttribute && node.hasAttribute("class")) {
    const keep = node.getAttribute("class").split(/\s+/).filter((c) => /^language-[\w+-]{1,30}$/.test(c));
    if (keep.length && node.tagName === "CODE") node.setAttribute("class", keep.join(" "));
    else node.removeAttribute("class");
  }
  if (node.tagName === "A") {
    const href = node.getAttribute("href") || "";
    if (!SAFE_URL.test(href.trim())) node.removeAttribute("href");
    node.setAttribute("rel", "noopener noreferrer nofollow");
    node.setAttribute("target", "_blank");
  }
});

const PURIFY_CONFIG = {
  ALLOWED_TAGS: ["p", "br", "hr", "strong", "em", "del", "s", "code", "pre", "blockquote", "ul", "ol", "li",
    "h1", "h2", "h3", "h4", "h5", "h6", "a", "table", "thead", "tbody", "tr", "th", "td", "span", "sup", "sub",
    "input", "img"],
  ALLOWED_ATTR: ["href", "title", "class", "type", "checked", "disabled", "start", "align", "src", "alt"],
  ALLOWED_URI_REGEXP: /^(?:https?:|mailto:|#)/i,
  RETURN_DOM_FRAGMENT: true,
};

export function renderMarkdown(text, { highlight = true } = {}) {
  const html = marked.parse(String(text ?? ""), { async: false });
  const fragment = purifier.sanitize(html, PURIFY_CONFIG);
  for (const input of fragment.querySelectorAll("input")) {
    if (input.getAttribute("type") !== "checkbox") input.remove(); else input.disabled = true;
  }
  for (const block of highlight ? fragment.querySelectorAll("pre > code") : []) {
    const lang = [...block.classList].find((c) => c.startsWith("language-"))?.slice(9);
    try {
      if (lang && hljs.getLanguage(lang)) block.innerHTML = hljs.highlight(block.textContent, { language: lang }).value;
      else block.innerHTML = hljs.highlightAuto(block.textContent).value;
      block.classList.add("hljs");
    } catch { /* leave plain */ }
    const copy = document.createElement("button");
    copy.type = "button";
    copy.className = "copy secondary";
    copy.textContent = t("copy");
    copy.setAttribute("aria-label", t("copy_code"));
    copy.addEventListener("click", async () => {
      try { await navigator.clipboard.writeText(block.textContent); copy.textContent = t("copied"); }
      catch { copy.textContent = t("copy_failed"); }
      setTimeout(() => { copy.textContent = t("copy"); }, 1500);
    });
    block.parentElement.append(copy);
  }
  return fragment;
}
