"""What a runner process gets: an allow-listed environment, resource limits, a private socket directory.

A runner parses model files and runs native code on them; if a crafted GGUF ever
takes one over, it should find no database URL, OIDC secret or pseudonym key in
its environment, leave no core dump full of other people's prompts, and have no
way to swap the sockets other runners listen on. This limits what a broken runner
exposes; it is not a sandbox (the runner still runs as the server's user).
"""

from __future__ import annotations

import os
import resource
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

# Exact names a runner may inherit: process basics, locale, Python's own switches, dynamic linking.
ENV_NAMES = frozenset({
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TEMP", "TMP",
    "PYTHONPATH", "PYTHONHOME", "PYTHONHASHSEED", "PYTHONDONTWRITEBYTECODE", "PYTHONFAULTHANDLER",
    "PYTHONMALLOC", "PYTHONWARNINGS", "VIRTUAL_ENV", "LD_LIBRARY_PATH",
})
# Prefixes of variables that tune the inference stack: threading, BLAS, ggml/llama.cpp, GPUs, coverage.
ENV_PREFIXES = ("LC_", "OMP_", "GOMP_", "KMP_", "OPENBLAS_", "MKL_", "GGML_", "LLAMA_", "CUDA_", "HIP_",
                "ROCR_", "HSA_", "GPU_", "VK_", "ONEAPI_", "COVERAGE_")
NEVER_PREFIX = "FLEXI_"  # the server's settings, secrets among them: a runner needs none of them


class UnsafeDirectory(RuntimeError):
    """The runner socket directory could be tampered with by someone else."""


def runner_environment(environ: Mapping[str, str], extra: Iterable[str] = ()) -> dict[str, str]:
    """The environment for a runner: allow-listed names (plus `extra` names), never FLEXI_*."""
    wanted = ENV_NAMES | frozenset(extra)
    env = {k: v for k, v in environ.items()
           if not k.startswith(NEVER_PREFIX) and (k in wanted or k.startswith(ENV_PREFIXES))}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def ensure_private_dir(path: Path) -> Path:
    """Create `path` with mode 0700, or check an existing one: ours, a real directory, not writable by others.

    An existing directory that is ours but readable by others is tightened to 0700. One owned by someone
    else, a symlink, or group/world-writable is refused: whoever can write there could replace a runner's
    socket and read every prompt sent to it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        pass
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode):
        raise UnsafeDirectory(f"{path} must be a directory, not a symlink or file; remove it")
    if info.st_uid != os.getuid():
        raise UnsafeDirectory(f"{path} belongs to another user (uid {info.st_uid}); runner sockets need a directory "
                              "owned by the server's user: remove it or set FLEXI_HOME to a private directory")
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o022:
        raise UnsafeDirectory(f"{path} is writable by other users (mode {mode:o}): they could replace the runner "
                              f"sockets. Remove it, or `chmod 700 {path}`")
    if mode & 0o077:
        os.chmod(path, 0o700)
    return path


@dataclass(frozen=True)
class RunnerLimits:
    """Resource limits a runner sets on itself before it touches the model file."""

    max_open_files: int = 1024
    max_data_bytes: int | None = None  # RLIMIT_DATA: heap and anonymous memory (KV cache, buffers), not the mmap'd model

    def apply(self) -> None:
        """Lower soft AND hard limits, so nothing running in the process can raise them again."""
        _lower(resource.RLIMIT_CORE, 0)  # a core dump would hold other people's prompts
        _lower(resource.RLIMIT_NOFILE, self.max_open_files)
        if self.max_data_bytes:
            _lower(resource.RLIMIT_DATA, self.max_data_bytes)


def _lower(which: int, value: int) -> None:
    soft, hard = resource.getrlimit(which)
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    resource.setrlimit(which, (value, value))


def data_limit(estimate_bytes: int, margin: float) -> int | None:
    """RLIMIT_DATA for a runner the scheduler expects to need `estimate_bytes`; None when margin is 0 (off).

    Measured with SmolLM2-135M (4 slots): data 463 MiB at 2k context for an estimate of 369 MiB,
    1000 MiB at 8k for 909 MiB; thread stacks and Python add a roughly constant part, hence + 1 GiB.
    """
    if margin <= 0:
        return None
    return int(estimate_bytes * margin) + 1024**3
