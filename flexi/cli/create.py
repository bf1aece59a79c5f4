"""`flexi create`: turn a GGUF file or a Modelfile into an /api/create request.

Local files are hashed, uploaded to /api/blobs/sha256:<hex> unless the server
already has them (HEAD), and referenced by digest in `files`/`adapters`.
`FROM <directory>` (a Hugging Face safetensors model, BERT so far) uploads the
directory's weight, config and tokenizer files one by one, as Ollama does; the
server converts them to GGUF.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from flexi.cli.client import CLIError, Client
from flexi.i18n import t
from flexi.cli.modelfile import Modelfile, ModelfileError, parse_modelfile
from flexi.cli.ui import ByteProgress, PullDisplay, console

GGUF_MAGIC = b"GGUF"
_CHUNK = 1 << 20
_MODEL_DIR_SUFFIXES = {".safetensors", ".json", ".txt", ".model"}  # weights, configs, vocabularies


def is_gguf(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            return fh.read(4) == GGUF_MAGIC
    except OSError:
        return False


def sha256_digest(path: Path, show_progress: bool = True) -> str:
    """ "sha256:<hex>" of a file, with a transient progress bar for big files."""
    digest = hashlib.sha256()
    size = path.stat().st_size
    if not show_progress or size < 64 * _CHUNK:
        with path.open("rb") as fh:
            while chunk := fh.read(_CHUNK):
                digest.update(chunk)
        return f"sha256:{digest.hexdigest()}"
    with ByteProgress(t("hashing", name=path.name), size, transient=True) as bar, path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
            bar.advance(len(chunk))
    return f"sha256:{digest.hexdigest()}"


def ensure_blob(client: Client, path: Path) -> str:
    """Upload `path` unless the server has its digest already; return the digest."""
    digest = sha256_digest(path)
    if client.blob_exists(digest):
        console(stderr=True).print(t("using_blob", digest=digest))
        return digest
    with ByteProgress(t("copying", digest=digest), path.stat().st_size) as bar:
        client.upload_blob(digest, path, on_chunk=bar.advance)
    return digest


def load_modelfile(path: Path) -> tuple[Modelfile, Path]:
    """A Modelfile from `path`, or a synthetic `FROM <path>` for a GGUF file or model directory; plus its base dir."""
    if not path.exists():
        raise CLIError(t("file_not_found", path=path))
    if is_gguf(path) or path.is_dir():  # a bare GGUF file or model directory: FROM it
        return Modelfile(from_=str(path.resolve())), path.resolve().parent
    try:
        return parse_modelfile(path.read_text(encoding="utf-8")), path.resolve().parent
    except (ModelfileError, UnicodeDecodeError) as exc:
        raise CLIError(str(exc)) from None


def _local_path(value: str, base: Path) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def _file_key(path: Path) -> str:
    return path.name if path.name.lower().endswith(".gguf") else "model.gguf"


def model_dir_files(directory: Path) -> dict[str, Path]:
    """The files of a safetensors model directory the server needs, by relative name.

    Top-level weights, configs and vocabularies, plus the config.json of sentence-transformers
    modules one level down (e.g. 1_Pooling/config.json, which says how to pool).
    """
    found = {p.name: p for p in sorted(directory.iterdir())
             if p.is_file() and not p.name.startswith(".") and p.suffix in _MODEL_DIR_SUFFIXES}
    for sub in sorted(directory.glob("*/config.json")):
        if not sub.parent.name.startswith("."):
            found[f"{sub.parent.name}/config.json"] = sub
    return found


def is_model_dir(path: Path) -> bool:
    """config.json next to at least one .safetensors file (what the server can convert)."""
    return path.is_dir() and (path / "config.json").is_file() and any(path.glob("*.safetensors"))


def build_request(client: Client, name: str, mf: Modelfile, base: Path) -> dict[str, Any]:
    """The /api/create body; uploads local FROM/ADAPTER files on the way."""
    if not mf.from_:
        raise CLIError(t("modelfile_no_from"))
    body: dict[str, Any] = {"model": name}
    source = _local_path(mf.from_, base)
    if source.is_dir():
        if not is_model_dir(source):
            raise CLIError(t("directory_from", path=source))
        console(stderr=True).print(t("gathering"))
        body["files"] = {rel: ensure_blob(client, path) for rel, path in model_dir_files(source).items()}
    elif source.is_file():
        console(stderr=True).print(t("gathering"))
        body["files"] = {_file_key(source): ensure_blob(client, source)}
    else:
        body["from"] = mf.from_
    adapters: dict[str, str] = {}
    for adapter in mf.adapters:
        path = _local_path(adapter, base)
        if not path.is_file():
            raise CLIError(t("file_not_found", path=path))
        adapters[path.name] = ensure_blob(client, path)
    if adapters:
        body["adapters"] = adapters
    body.update(mf.request_fields())
    body["stream"] = True
    return body


def create(client: Client, name: str, file: Path) -> None:
    mf, base = load_modelfile(file)
    body = build_request(client, name, mf, base)
    with PullDisplay() as display:
        for event in client.stream("POST", "/api/create", body):
            display.update(event)
