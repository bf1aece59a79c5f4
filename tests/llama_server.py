"""llama.cpp's own `llama-server` as a real remote engine for the tests (it speaks the OpenAI API vLLM speaks).

The binary is built from the llama-cpp-python sdist's vendored llama.cpp by benchmarks/build_llama_server.sh
(about 6 minutes, cached in ~/.cache/flexi-build). FLEXI_LLAMA_SERVER names a binary built elsewhere (another
worktree, CI). Without one the tests skip, or fail when FLEXI_REQUIRE_LLAMA_SERVER=1 (as in CI), so CI cannot
pass by skipping them.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import httpx
import pytest

from flexi.store.store import default_model_file

ROOT = Path(__file__).resolve().parent.parent


def cached_binary() -> Path:
    """Where benchmarks/build_llama_server.sh puts the binary for the installed llama-cpp-python."""
    cache = os.environ.get("FLEXI_BUILD_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "flexi-build")
    return Path(cache) / f"llama.cpp-{version('llama-cpp-python')}" / "build" / "bin" / "llama-server"


def binary() -> Path:
    """The llama-server to test against: FLEXI_LLAMA_SERVER, else the cached build; skips (or fails) without one."""
    named = os.environ.get("FLEXI_LLAMA_SERVER")
    path = Path(named) if named else cached_binary()
    if path.is_file() and os.access(path, os.X_OK):
        return path
    message = (f"no llama-server at {path}: build it with `bash benchmarks/build_llama_server.sh` "
               "(about 6 minutes) or set FLEXI_LLAMA_SERVER to a built binary")
    if os.environ.get("FLEXI_REQUIRE_LLAMA_SERVER") == "1":
        pytest.fail(f"FLEXI_REQUIRE_LLAMA_SERVER=1 but {message}", pytrace=False)
    pytest.skip(message)


@functools.cache
def no_repack_flag(path: Path) -> tuple[str, ...]:
    """The switch that turns off CPU weight repacking, whichever this build has (as the batching benchmark
    does): the repacked AMX path dies with SIGILL where the kernel does not grant AMX to the process."""
    help_text = subprocess.run([str(path), "--help"], capture_output=True, text=True, check=False).stdout
    for flag in ("--no-repack", "--no-extra-bufts", "-nr"):
        if flag in help_text.split():
            return (flag,)
    return ()


@dataclass
class LlamaServer:
    url: str  # the server's root; its OpenAI base URL is url + "/v1"
    proc: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL: the engine vanishes mid-request, as a crashed GPU server would."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_llama_server(log_path: Path, port: int, slots: int = 4, context: int = 4096, threads: int = 1,
                       timeout: float = 120, extra: tuple[str, ...] = ()) -> LlamaServer:
    """llama-server on Flexi's default model with `slots` parallel slots sharing `context` tokens and
    --metrics (plus `extra` arguments), once /health answers 200."""
    model = default_model_file()
    if model is None:
        pytest.skip("the default model is not installed")
    path = binary()
    cmd = [str(path), "-m", str(model), "-np", str(slots), "-c", str(context), "-t", str(threads),
           "-tb", str(threads), "--host", "127.0.0.1", "--port", str(port), "--metrics",
           *no_repack_flag(path), *extra]
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    server = LlamaServer(f"http://127.0.0.1:{port}", proc, log_path)
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"llama-server exited with code {proc.returncode}:\n{server.log()[-1500:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(server.url + "/health", timeout=2).status_code == 200:
                return server
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"llama-server did not become healthy within {timeout:.0f} s:\n{server.log()[-1500:]}")
        time.sleep(0.2)
