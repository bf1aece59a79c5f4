// Where conversations live. Default: only in this browser (localStorage), nothing on the
// server. With FLEXI_CHAT_HISTORY=server: the server's /me/conversations, with retention,
// included in the account export and erasure.
import { api } from "./api.js";
import { storage } from "./storage.js";

const MAX_CONVERSATIONS = 200;

export class BrowserStore {
  constructor(owner) { this.key = `flexi.conversations.${owner || "local"}`; this.where = "browser"; }
  _load() {
    try { return JSON.parse(storage.getItem(this.key) || "[]"); } catch { return []; }
  }
  _save(all) { storage.setItem(this.key, JSON.stringify(all.slice(0, MAX_CONVERSATIONS))); }
  async list() {
    return this._load().map(({ messages, ...rest }) => ({ ...rest, message_count: messages.length }))
      .sort((a, b) => (b.updated_at || "").localeCompare(a.updated_at || ""));
  }
  async get(id) { return this._load().find((c) => String(c.id) === String(id)) || null; }
  async create(conversation) {
    const all = this._load();
    const now = new Date().toISOString();
    const created = { ...conversation, id: `b${Date.now().toString(36)}${Math.random().toString(36).slice(2, 7)}`,
      created_at: now, updated_at: now };
    all.unshift(created);
    this._save(all);
    return created;
  }
  async saveMessages(id, messages) {
    const all = this._load();
    const found = all.find((c) => String(c.id) === String(id));
    if (found) { found.messages = messages; found.updated_at = new Date().toISOString(); this._save(all); }
  }
  async rename(id, title) {
    const all = this._load();
    const found = all.find((c) => String(c.id) === String(id));
    if (found) { found.title = title; this._save(all); }
  }
  async remove(id) { this._save(this._load().filter((c) => String(c.id) !== String(id))); }
}

export class ServerStore {
  constructor() { this.where = "server"; }
  async list() { return (await api("/me/conversations")).conversations; }
  async get(id) {
    try { return await api(`/me/conversations/${encodeURIComponent(id)}`); } catch (err) {
      if (err.status === 404) return null;
      throw err;
    }
  }
  async create(conversation) { return api("/me/conversations", { method: "POST", body: conversation }); }
  async saveMessages(id, messages) {
    // the server keeps role, content and an answer's sources (the fields it accepts, nothing else)
    const source = ({ n, document_id, document, page, text }) => ({ n, document_id, document, page: page ?? null, text: text ?? "" });
    const plain = messages.map(({ role, content, citations }) =>
      (citations && citations.length ? { role, content, citations: citations.map(source) } : { role, content }));
    await api(`/me/conversations/${encodeURIComponent(id)}/messages`, { method: "PUT", body: { messages: plain } });
  }
  async rename(id, title) { await api(`/me/conversations/${encodeURIComponent(id)}`, { method: "PATCH", body: { title } }); }
  async remove(id) { await api(`/me/conversations/${encodeURIComponent(id)}`, { method: "DELETE" }); }
}
