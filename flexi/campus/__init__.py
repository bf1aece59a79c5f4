"""Campus routes beside the two API dialects: course assistants, conversations, API keys, the
signed-in user's own data (/me), sign-in (/auth) and the admin API (/admin)."""
