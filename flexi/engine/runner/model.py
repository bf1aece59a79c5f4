"""A loaded llama.cpp model and its vocabulary: tokenize, detokenize, special tokens."""

from __future__ import annotations

import ctypes
import sys
from typing import Any

import llama_cpp as ll

_LOG_CALLBACK: Any = None


def quiet_llama_logs(verbose: bool = False) -> None:
    """Route llama.cpp's logging to stderr, warnings and errors only unless verbose."""
    global _LOG_CALLBACK

    @ll.llama_log_callback
    def _log(level: int, text: bytes, _user: ctypes.c_void_p) -> None:
        if verbose or level == 4:  # GGML_LOG_LEVEL_ERROR
            try:
                sys.stderr.write(text.decode("utf-8", "replace"))
            except Exception:
                pass

    _LOG_CALLBACK = _log
    ll.llama_log_set(_log, ctypes.c_void_p(0))


def cpu_has_amx() -> bool:
    """True on CPUs with AMX tiles, where ggml's AMX matmul is known to crash."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            return "amx_int8" in f.read()
    except OSError:
        return False


class LoadedModel:
    """Owns a llama_model; contexts are created from it by the batch engine."""

    def __init__(self, path: str, n_gpu_layers: int = 0, repack: bool = True) -> None:
        ll.llama_backend_init()
        params = ll.llama_model_default_params()
        params.n_gpu_layers = n_gpu_layers
        # Weight repacking into CPU "extra" buffers (AMX, AVX2 Q4_0 layouts). ggml's AMX path
        # segfaults on some Sapphire Rapids machines (llama.cpp#20824), so callers turn it off there.
        params.use_extra_bufts = repack
        self.ptr = ll.llama_model_load_from_file(path.encode(), params)
        if not self.ptr:
            raise RuntimeError(f"llama.cpp could not load the model file {path!r}")
        self.vocab = ll.llama_model_get_vocab(self.ptr)
        self.n_vocab = ll.llama_vocab_n_tokens(self.vocab)
        self.n_ctx_train = ll.llama_model_n_ctx_train(self.ptr)
        self.n_embd = ll.llama_model_n_embd(self.ptr)
        self.bos = ll.llama_vocab_bos(self.vocab)
        self.eog_tokens = [t for t in range(self.n_vocab) if ll.llama_vocab_is_eog(self.vocab, t)]
        self._piece_buf = ctypes.create_string_buffer(256)

    def tokenize(self, text: str, add_special: bool = True) -> list[int]:
        data = text.encode("utf-8")
        n_max = len(data) + 8
        buf = (ll.llama_token * n_max)()
        n = ll.llama_tokenize(self.vocab, data, len(data), buf, n_max, add_special, True)
        if n < 0:
            buf = (ll.llama_token * (-n))()
            n = ll.llama_tokenize(self.vocab, data, len(data), buf, -n, add_special, True)
        tokens = list(buf[:n])
        if len(tokens) >= 2 and tokens[0] == self.bos and tokens[1] == self.bos:
            tokens = tokens[1:]  # the chat template already wrote BOS text
        return tokens

    def piece(self, token: int) -> bytes:
        n = ll.llama_token_to_piece(self.vocab, token, self._piece_buf, len(self._piece_buf), 0, False)
        if n < 0:
            big = ctypes.create_string_buffer(-n)
            n = ll.llama_token_to_piece(self.vocab, token, big, -n, 0, False)
            return big.raw[:n]
        return self._piece_buf.raw[:n]

    def is_eog(self, token: int) -> bool:
        return bool(ll.llama_vocab_is_eog(self.vocab, token))

    def close(self) -> None:
        if self.ptr:
            ll.llama_model_free(self.ptr)
            self.ptr = None
