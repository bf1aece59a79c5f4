"""Child process of `flexi.store.quantize`: one llama.cpp quantizer call, nothing else.

Usage: python -m flexi.store.quantize_worker SRC DST FTYPE THREADS. The exit status is the
quantizer's return code (0 = written); llama.cpp's own log goes to stderr, where the parent counts the
tensors that fell back to another type. Kept apart so that a crash in C++ ends only this process.
"""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    if len(argv) != 4:
        print("usage: python -m flexi.store.quantize_worker SRC DST FTYPE THREADS", file=sys.stderr)
        return 2
    src, dst, ftype, threads = argv[0], argv[1], int(argv[2]), int(argv[3])
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = threads
    params.allow_requantize = True  # the default model ships only quantized (Q4_1)
    rc = int(llama_cpp.llama_model_quantize(src.encode(), dst.encode(), params))
    if rc != 0:
        print(f"llama_model_quantize returned {rc}", file=sys.stderr)
    return 1 if rc != 0 else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
