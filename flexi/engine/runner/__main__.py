"""Entry point: `python -m flexi.engine.runner --model PATH --socket PATH ...`.

Prints one READY line with model facts on stdout once it accepts connections;
the server waits for it. Exits when its parent dies.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import os
import signal
import sys

from flexi.engine.runner.protocol import RunnerInfo, ready_line


def _die_with_parent() -> None:
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="flexi-runner")
    parser.add_argument("--model", required=True)
    parser.add_argument("--socket", required=True)
    parser.add_argument("--ctx", type=int, default=4096, help="context per sequence")
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--repack", choices=["auto", "on", "off"], default="auto",
                        help="CPU weight repacking; auto turns it off on AMX CPUs (llama.cpp#20824)")
    parser.add_argument("--max-open-files", type=int, default=1024, help="RLIMIT_NOFILE")
    parser.add_argument("--max-data-bytes", type=int, default=0, help="RLIMIT_DATA (0 = unlimited)")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    _die_with_parent()
    os.umask(0o077)  # the socket (and anything else this process creates) is for the server's user only

    from flexi.engine.runner_isolation import RunnerLimits

    RunnerLimits(args.max_open_files, args.max_data_bytes or None).apply()  # before any model byte is read

    from flexi.engine.runner.batch_engine import BatchEngine, EngineConfig
    from flexi.engine.runner.model import LoadedModel, cpu_has_amx, quiet_llama_logs
    from flexi.engine.runner.server import serve

    quiet_llama_logs(args.verbose)
    try:
        repack = args.repack == "on" or (args.repack == "auto" and not cpu_has_amx())
        model = LoadedModel(args.model, repack=repack)
    except Exception as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    n_ctx = args.ctx  # decided by the server (the scheduler clamps it to the training context once)
    config = EngineConfig(n_ctx_seq=n_ctx, n_parallel=args.parallel, n_threads=args.threads, n_batch=min(args.batch, n_ctx))

    def ready() -> None:
        info = RunnerInfo(pid=os.getpid(), n_ctx=n_ctx, n_parallel=args.parallel, n_ctx_train=model.n_ctx_train,
                          n_embd=model.n_embd, n_vocab=model.n_vocab)
        print(ready_line(info), flush=True)

    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    try:
        asyncio.run(serve(args.socket, lambda emit: BatchEngine(model, config, emit), ready))
    except Exception as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
