// The browser's localStorage, or a memory-only stand-in where the browser denies it: inside an LTI
// platform's iframe (a third-party context) browsers that block third-party storage throw on every
// access. The page then still works; what it would remember lasts until the frame is closed.
function available() {
  try {
    const probe = "flexi.storage.probe";
    window.localStorage.setItem(probe, "1");
    window.localStorage.removeItem(probe);
    return window.localStorage;
  } catch {
    return null;
  }
}

class MemoryStorage {
  constructor() { this.items = new Map(); }
  getItem(key) { return this.items.has(key) ? this.items.get(key) : null; }
  setItem(key, value) { this.items.set(key, String(value)); }
  removeItem(key) { this.items.delete(key); }
}

export const storage = available() || new MemoryStorage();
