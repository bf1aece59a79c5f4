"""Pseudonyms: a keyed hash (HMAC-SHA256) of each external identity.

Usage records and research exports carry the pseudonym, never the
university's user id. The key lives OUTSIDE the database on purpose: a plain
hash of a known id (a matriculation number, an e-mail address) can be
reversed by hashing every candidate, and a key stored next to the data would
fall with the same dump or backup. With the key apart, a copy of the
database alone does not re-identify anyone (GDPR Art. 4(5): the additional
information is "kept separately"). Deleting or replacing the key makes all
existing pseudonyms unlinkable, which is also an erasure tool.

The key comes from `FLEXI_PSEUDONYM_KEY` (for several replicas: all must
share it, e.g. from a Kubernetes secret), else from `$FLEXI_HOME/pseudonym.key`,
which is created on first use with mode 0600 (readable by the server's user
only). Back it up apart from the database: losing it breaks the link between
users and their past usage.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
from collections.abc import Mapping
from pathlib import Path

log = logging.getLogger(__name__)

KEY_ENV = "FLEXI_PSEUDONYM_KEY"
KEY_FILE = "pseudonym.key"
MIN_KEY_CHARS = 32


def pseudonymize(subject: str, key: bytes) -> str:
    """The pseudonym of `subject`: 64 hex characters, the same for the same key."""
    return hmac.new(key, subject.encode("utf-8"), hashlib.sha256).hexdigest()


def load_key(home: Path, environ: Mapping[str, str] = os.environ) -> bytes:
    """The pseudonym key from the environment, else from (a new) key file in `home`."""
    if value := environ.get(KEY_ENV, "").strip():
        if len(value) < MIN_KEY_CHARS:
            raise ValueError(f"{KEY_ENV} must be at least {MIN_KEY_CHARS} characters (e.g. `openssl rand -hex 32`)")
        return value.encode("utf-8")
    path = home / KEY_FILE
    if not path.exists():
        _create_key_file(path)
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        log.warning("%s is readable by other users (mode %o); chmod 600 it", path, mode)
    value = path.read_text(encoding="ascii").strip()
    if len(value) < MIN_KEY_CHARS:
        raise ValueError(f"{path} holds no usable key (under {MIN_KEY_CHARS} characters)")
    return value.encode("ascii")


def _create_key_file(path: Path) -> None:
    """Write a fresh random key with mode 0600, atomically: the key is written to
    a private temporary file and linked into place, so a concurrent start sees
    either no file or a complete one, and the first writer wins."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(secrets.token_hex(32) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process created it first; use theirs
    finally:
        tmp.unlink(missing_ok=True)
