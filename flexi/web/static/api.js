// Talking to the Flexi server: JSON calls and NDJSON streams, with the CSRF token that
// cookie sign-ins need on every change (see flexi/web/csrf.py).
let csrf = null;
export function setCsrf(token) { csrf = token || null; }

export class ApiError extends Error {
  constructor(status, message, body) { super(message); this.status = status; this.body = body; }
}

// Started from /lti/app (inside an LTI platform's frame): every call says so, and the server then uses
// only the LTI session cookie, never a first-party session the browser also holds (flexi.access.credentials).
const ltiShell = location.pathname === "/lti/app";

function headers(extra = {}) {
  const out = { Accept: "application/json", ...extra };
  if (csrf) out["X-Flexi-CSRF"] = csrf;
  if (ltiShell) out["X-Flexi-LTI"] = "1";
  return out;
}

function messageOf(body, status) {
  if (body && typeof body.error === "string") return body.error;
  if (body && body.error && typeof body.error.message === "string") return body.error.message;
  if (body && typeof body.detail === "string") return body.detail;
  return `HTTP ${status}`;
}

export async function api(path, { method = "GET", body, form, signal } = {}) {
  const init = { method, headers: headers(), signal, credentials: "same-origin" };
  if (form !== undefined) init.body = form; // FormData: the browser sets the multipart boundary itself
  else if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  const response = await fetch(path, init);
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = text; }
  if (!response.ok) throw new ApiError(response.status, messageOf(data, response.status), data);
  return data;
}

// POST a body and call onChunk for every NDJSON line of the answer (Ollama's streaming format).
export async function streamNdjson(path, body, onChunk, signal) {
  const response = await fetch(path, {
    method: "POST", credentials: "same-origin", signal,
    headers: headers({ "Content-Type": "application/json", Accept: "application/x-ndjson" }),
    body: JSON.stringify(body),
  });
  if (!response.ok) {
    const text = await response.text();
    let data = null;
    try { data = JSON.parse(text); } catch { data = text; }
    throw new ApiError(response.status, messageOf(data, response.status), data);
  }
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let nl;
    while ((nl = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, nl).trim();
      buffer = buffer.slice(nl + 1);
      if (!line) continue;
      deliver(JSON.parse(line), onChunk);
    }
  }
  if (buffer.trim()) deliver(JSON.parse(buffer), onChunk); // a last line without its newline
}

function deliver(chunk, onChunk) {
  if (chunk.error) throw new ApiError(500, chunk.error, chunk); // an error after the stream began
  onChunk(chunk);
}

// The models a chat can use: /ui/models without embedding-only ones (e.g. all-minilm), which cannot answer.
export async function chatModels() {
  const out = await api("/ui/models");
  return { models: out.models.filter((m) => !m.capabilities || m.capabilities.includes("completion")), fallback: out.default };
}
