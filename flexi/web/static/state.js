// What the page knows about this visit: server config, the signed-in user, where chats live.
export const session = { config: null, me: null, store: null };

export function isTeacher() {
  const me = session.me;
  if (!me) return session.config?.auth === "off";
  return me.role === "admin" || me.role === "teacher" || (me.courses || []).some((c) => c.role === "teacher");
}

export function isAdmin() { return session.me ? session.me.role === "admin" : session.config?.auth === "off"; }
