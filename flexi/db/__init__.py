"""State database (issue 4): users, roles, groups, courses, API keys, model
policies, quotas, usage records, terms acceptances.

SQLAlchemy 2 models (`models`), engine and sessions (`engine`), Alembic
migrations shipped in the package and run from code (`migrate`), pseudonyms
(`pseudonym`) and API keys (`apikeys`). SQLite in `$FLEXI_HOME` by default,
PostgreSQL via `FLEXI_DATABASE_URL`.
"""

from flexi.db.engine import make_engine, resolve_url, session_factory
from flexi.db.migrate import upgrade

__all__ = ["make_engine", "resolve_url", "session_factory", "upgrade"]
