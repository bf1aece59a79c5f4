"""The generation service: the one way a generation or embedding goes from a parsed request to a
stream of events - resolve, admit, augment, render, reserve, schedule, meter. Routers (both dialects,
course assistants, the web page) call it with the `Caller` the access middleware resolved; it calls
the access gate and a backend (the local scheduler today, remote engines later)."""
