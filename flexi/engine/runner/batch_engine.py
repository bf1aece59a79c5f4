"""Continuous batching over llama.cpp: every decode step advances all active sequences.

Runs on one dedicated thread (llama.cpp contexts are not thread-safe). Commands
arrive through a thread-safe inbox; events leave through `emit`, called once per
step with all events of that step so the I/O side wakes up once, not per token.
"""

from __future__ import annotations

import logging
import queue
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

import llama_cpp as ll
import msgspec

from flexi.engine.runner.embedder import Embedder
from flexi.engine.runner.errors import RequestError
from flexi.engine.runner.logprobs import entries, logit_rows
from flexi.engine.runner.model import LoadedModel
from flexi.engine.runner.planner import SeqDemand, common_prefix, pick_slot, plan
from flexi.engine.runner.protocol import (
    Cancel,
    Detokenize,
    Detokenized,
    Embed,
    Embedded,
    Error,
    Event,
    Generate,
    Prefill,
    Request,
    Scored,
    Text,
    Tokenize,
    Tokenized,
)
from flexi.engine.runner.sampling import GrammarError, build_chain
from flexi.engine.runner.sequence import Sequence, Slot
from flexi.engine.runner.stops import StopMatcher
from flexi.engine.types import MAX_TOP_LOGPROBS, SCORE_CHUNK, FinishReason, TokenLogprob

log = logging.getLogger("flexi.runner")

Emit = Callable[[list[tuple[int, Event]]], None]
"""Receives all events of one step as (engine request id, event)."""


@dataclass
class EngineConfig:
    n_ctx_seq: int
    n_parallel: int
    n_threads: int
    n_batch: int = 512
    prefill_chunk: int = 256
    #: most prompt tokens all scoring sequences together feed per step: each needs its logits row kept (n_vocab
    #: floats, 200-500 KiB), and llama.cpp's output buffer grows to the largest number of rows one step asks for
    score_chunk: int = SCORE_CHUNK


@dataclass
class EmbedJob:
    req_id: int
    inputs: list[str]
    truncate: bool
    normalize: bool
    vectors: list[list[float]] = field(default_factory=list)
    tokens: int = 0
    next_tokens: list[int] | None = None  # the next input, tokenized but left out of the last pack


class BatchEngine:
    def __init__(self, model: LoadedModel, config: EngineConfig, emit: Emit) -> None:
        self.model = model
        self.cfg = config
        self.emit = emit
        self.inbox: queue.SimpleQueue[tuple[int, Request | None]] = queue.SimpleQueue()  # None: shut down
        params = ll.llama_context_default_params()
        params.n_ctx = config.n_ctx_seq * config.n_parallel
        params.n_batch = config.n_batch
        params.n_ubatch = config.n_batch
        params.n_seq_max = config.n_parallel
        params.n_threads = config.n_threads
        params.n_threads_batch = config.n_threads
        params.kv_unified = False  # each slot owns exactly n_ctx_seq cells: no silent 1/N surprises
        params.no_perf = True
        self.ctx = ll.llama_init_from_model(model.ptr, params)
        if not self.ctx:
            raise RuntimeError("llama.cpp could not create a context (out of memory?)")
        self.mem = ll.llama_get_memory(self.ctx)
        self.batch = ll.llama_batch_init(config.n_batch, 0, 1)
        self.slots = [Slot(seq_id=i) for i in range(config.n_parallel)]
        self.active: list[Sequence] = []
        self.waiting: deque[Sequence] = deque()
        self.by_id: dict[int, Sequence] = {}
        self.embedder = Embedder(model, config.n_ctx_seq, config.n_threads)
        self._events: list[tuple[int, Event]] = []
        self._stopping = False
        self._embed_jobs: deque[EmbedJob] = deque()
        self._cancelled_embeds: set[int] = set()
        self._warm_up()

    def _warm_up(self) -> None:
        """Decode one token so weights are paged in and compute buffers exist before READY:
        the first user request should not pay for it (it shows up as load_duration instead)."""
        b = self.batch
        b.token[0] = self.model.bos if self.model.bos >= 0 else 0
        b.pos[0] = 0
        b.n_seq_id[0] = 1
        b.seq_id[0][0] = 0
        b.logits[0] = True
        b.n_tokens = 1
        ll.llama_decode(self.ctx, b)
        ll.llama_memory_seq_rm(self.mem, 0, -1, -1)

    # --- commands (any thread) ---------------------------------------------
    def submit(self, req_id: int, request: Request) -> None:
        self.inbox.put((req_id, request))

    def stop(self) -> None:
        self.inbox.put((0, None))

    # --- the loop (engine thread) --------------------------------------------
    def run(self) -> None:
        while not self._stopping:
            block = not self.active and not self.waiting and not self._embed_jobs
            self._drain(block)
            self._admit()
            self._flush()  # "prefill" events leave before the (possibly long) decode step
            if self.active:
                self._step()
            if self._embed_jobs:
                self._embed_next()
            self._flush()
        self.close()

    def _drain(self, block: bool) -> None:
        while True:
            try:
                cmd = self.inbox.get(block=block)
            except queue.Empty:
                return
            block = False
            self._handle(*cmd)

    def _handle(self, req_id: int, request: Request | None) -> None:
        try:
            match request:
                case Generate():
                    self._new_sequence(req_id, request)
                case Cancel():
                    seq = self.by_id.get(req_id)
                    if seq is not None:
                        seq.cancelled = True
                    elif any(job.req_id == req_id for job in self._embed_jobs):
                        self._cancelled_embeds.add(req_id)
                case Embed(inputs=[]):
                    self._events.append((req_id, Embedded(embeddings=[], prompt_tokens=0)))
                case Embed():
                    self._embed_jobs.append(EmbedJob(req_id, list(request.inputs), request.truncate, request.normalize))
                case Tokenize():
                    self._events.append((req_id, Tokenized(self.model.tokenize(request.text, request.add_special))))
                case Detokenize():
                    text = b"".join(self.model.piece(t) for t in request.tokens).decode("utf-8", "replace")
                    self._events.append((req_id, Detokenized(text)))
                case None:
                    self._stopping = True
        except RequestError as exc:
            self._events.append((req_id, Error(str(exc), exc.status)))
        except GrammarError as exc:
            self._events.append((req_id, Error(str(exc), 400)))
        except Exception as exc:  # keep the runner alive for everybody else
            log.exception("request %s failed", req_id)
            self._events.append((req_id, Error(f"runner error: {exc}", 500)))

    def _embed_next(self) -> None:
        """Embed the next pack of inputs of the oldest embedding request (interleaved with decode steps)."""
        job = self._embed_jobs[0]
        if job.req_id not in self._cancelled_embeds:
            try:
                pack = self._next_pack(job)
                job.vectors += self.embedder.embed_pack(pack, job.normalize)
                job.tokens += sum(map(len, pack))
            except RequestError as exc:
                self._events.append((job.req_id, Error(str(exc), exc.status)))
                self._embed_jobs.popleft()
                return
            except Exception as exc:  # keep the runner alive for everybody else
                log.exception("embedding request %s failed", job.req_id)
                self._events.append((job.req_id, Error(f"runner error: {exc}", 500)))
                self._embed_jobs.popleft()
                return
            if len(job.vectors) < len(job.inputs):
                return
            self._events.append((job.req_id, Embedded(embeddings=job.vectors, prompt_tokens=job.tokens)))
        self._cancelled_embeds.discard(job.req_id)
        self._embed_jobs.popleft()

    def _next_pack(self, job: EmbedJob) -> list[list[int]]:
        """The job's next inputs, in order, as many as fit the embedder's pack budget (at least one: an input
        longer than the budget goes alone). The first input that does not fit waits for the next pack."""
        embedder = self.embedder
        pack: list[list[int]] = []
        used = 0
        index = len(job.vectors)
        while index < len(job.inputs) and len(pack) < embedder.max_pack_seqs:
            tokens = job.next_tokens if job.next_tokens is not None else embedder.tokens_for(job.inputs[index], job.truncate)
            job.next_tokens = None
            if pack and used + len(tokens) > embedder.pack_tokens:
                job.next_tokens = tokens
                break
            pack.append(tokens)
            used += len(tokens)
            index += 1
        return pack

    def _new_sequence(self, req_id: int, p: Generate) -> None:
        prefix = p.prefix_tokens
        for t in prefix:
            if not 0 <= t < self.model.n_vocab:
                raise RequestError(f"context contains an invalid token id {t}")
        prompt = prefix + self.model.tokenize(p.prompt, add_special=not prefix)
        if not prompt:
            raise RequestError("the prompt is empty")
        limit = self.cfg.n_ctx_seq
        if len(prompt) >= limit:
            raise RequestError(
                f"the prompt is too long: {len(prompt)} tokens, but this model is loaded with a context of {limit} tokens"
                " (shorten the prompt or raise num_ctx)"
            )
        room = limit - len(prompt)
        max_new = room if p.max_tokens < 0 else min(p.max_tokens, room)
        ignore_eos = p.ignore_eos and not p.grammar
        last_n = p.sampling.repeat_last_n
        sampling = msgspec.structs.replace(  # -1 = the whole context, like Ollama
            p.sampling, repeat_last_n=limit if last_n < 0 or last_n > limit else last_n)
        chain = build_chain(self.model.vocab, self.model.n_vocab, sampling, p.grammar,
                            self.model.eog_tokens if ignore_eos else [])
        seq = Sequence(req_id=req_id, prompt=prompt, max_new=max_new, ignore_eos=ignore_eos,
                       return_tokens=p.return_tokens, chain=chain, stops=StopMatcher(list(p.stop)),
                       top_logprobs=min(p.logprobs, MAX_TOP_LOGPROBS))
        if p.score_prompt:  # the first token has nothing before it to be predicted from
            seq.scored = [TokenLogprob(prompt[0], self.model.piece(prompt[0]), None)]
        elif max_new == 0:  # num_predict 0: nothing to generate (Ollama answers at once)
            self._events.append((req_id, seq.stats("length")))
            ll.llama_sampler_free(chain)
            return
        self.by_id[req_id] = seq
        self.waiting.append(seq)

    def _admit(self) -> None:
        """Give waiting sequences a free slot (planner.pick_slot: pack the batch, keep valuable caches)."""
        while self.waiting:
            seq = self.waiting[0]
            if seq.cancelled:
                self.waiting.popleft()
                self._finish(seq, "cancelled")
                continue
            if all(s.busy for s in self.slots):
                return
            self.waiting.popleft()
            if seq.scored is None:
                best = pick_slot(self.slots, seq.prompt)
                keep = min(common_prefix(best.cached, seq.prompt), len(seq.prompt) - 1)
            else:  # cached tokens have no logits: a scored prompt is prefilled whole, in the least valuable slot
                best, keep = pick_slot(self.slots, []), 0
            ll.llama_memory_seq_rm(self.mem, best.seq_id, keep, -1)
            del best.cached[keep:]
            best.busy = True
            seq.slot = best
            seq.n_past = keep
            seq.cached_tokens = keep
            seq.pending = seq.prompt[keep:]
            self.active.append(seq)
            # told before the prefill runs: a client that leaves during a long prefill still pays for it
            self._events.append((seq.req_id, Prefill(prompt_tokens=len(seq.prompt), cached_tokens=keep,
                                                             kv=self._kv(len(seq.pending)))))

    def _step(self) -> None:
        for seq in [s for s in self.active if s.cancelled]:
            self._finish(seq, "cancelled")
        if not self.active:
            return
        demands = [SeqDemand(s.slot.seq_id, len(s.pending), s.decoding,  # type: ignore[union-attr]
                             scoring=s.scored is not None and not s.decoding) for s in self.active]
        allot = plan(demands, self.cfg.n_batch, self.cfg.prefill_chunk, self.cfg.score_chunk)
        b = self.batch
        n = 0
        fed: list[tuple[Sequence, int, int, int]] = []  # seq, tokens fed, batch index of its first token and of its output (-1: none)
        # Slot order: llama.cpp forms one micro-batch per run of consecutive sequence ids (see planner).
        for seq in sorted(self.active, key=lambda s: s.slot.seq_id):  # type: ignore[union-attr]
            k = allot.get(seq.slot.seq_id, 0)  # type: ignore[union-attr]
            if k == 0:
                continue
            out_idx = -1
            first = n
            every = seq.scored is not None and not seq.decoding  # scoring the prompt: logits at every position
            for j in range(k):
                b.token[n] = seq.pending[j]
                b.pos[n] = seq.n_past + j
                b.n_seq_id[n] = 1
                b.seq_id[n][0] = seq.slot.seq_id  # type: ignore[union-attr]
                last = j == k - 1 and k == len(seq.pending)
                b.logits[n] = last or every
                if last:
                    out_idx = n
                n += 1
            fed.append((seq, k, first, out_idx))
        b.n_tokens = n
        rc = ll.llama_decode(self.ctx, b)
        if rc != 0:
            for seq, _, _, _ in fed:
                self._fail(seq, f"llama.cpp decode failed (code {rc})", 500)
            return
        for seq, k, first, out_idx in fed:
            try:
                self._advance(seq, k, first, out_idx)
            except Exception as exc:  # e.g. in scoring: fail this sequence only, keep the runner for everybody else
                log.exception("request %s failed after its decode step", seq.req_id)
                if self.by_id.get(seq.req_id) is seq:
                    self._fail(seq, f"runner error: {exc}", 500)

    def _advance(self, seq: Sequence, k: int, first: int, out_idx: int) -> None:
        """Take in what one decode step did for `seq`: prompt scores, the cache, and its next token."""
        if seq.scored is not None and not seq.decoding:
            self._score(seq, first, k)
        seq.slot.cached.extend(seq.pending[:k])  # type: ignore[union-attr]
        del seq.pending[:k]
        seq.n_past += k
        if out_idx >= 0:
            if seq.scored is not None and not seq.decoding:  # the prompt is prefilled: its scores go out
                self._events.append((seq.req_id, Scored(seq.scored)))
                if seq.max_new == 0:  # echo only: the prompt scored, nothing generated
                    self._finish(seq, "length")
                    return
            seq.decoding = True
            token = ll.llama_sampler_sample(seq.chain, self.ctx, out_idx)
            if seq.top_logprobs >= 0:
                entry = entries(logit_rows(self.ctx, out_idx, 1, self.model.n_vocab), [token],
                                seq.top_logprobs, self.model.piece)[0]
                self._on_token(seq, token, entry)
            else:
                self._on_token(seq, token)

    def _score(self, seq: Sequence, first: int, k: int) -> None:
        """Score the prompt tokens after the `k` just fed from batch index `first`: the logits at prompt
        position p give the logprob of token p + 1 (the last position's predict the first new token)."""
        start = seq.n_past  # the prompt index of the first token fed
        rows = min(k, len(seq.prompt) - 1 - start)
        if rows <= 0:
            return
        logits = logit_rows(self.ctx, first, rows, self.model.n_vocab)
        assert seq.scored is not None
        seq.scored += entries(logits, seq.prompt[start + 1:start + 1 + rows], max(seq.top_logprobs, 0), self.model.piece)

    def _on_token(self, seq: Sequence, token: int, entry: TokenLogprob | None = None) -> None:
        if seq.t_first is None:
            seq.t_first = time.perf_counter()
        if self.model.is_eog(token) and not seq.ignore_eos:
            self._finish(seq, "stop")
            return
        seq.generated.append(token)
        text = seq.decoder.decode(self.model.piece(token))
        out, hit = seq.stops.feed(text)
        if entry is not None:  # every token's entry goes out with its step, even while its text is held back
            self._events.append((seq.req_id, Text(out, len(seq.generated), [entry])))
        elif out:
            self._events.append((seq.req_id, Text(out, len(seq.generated))))
        if hit:
            self._finish(seq, "stop", flush=False)
        elif len(seq.generated) >= seq.max_new:
            self._finish(seq, "length")
        else:
            seq.pending = [token]

    def _finish(self, seq: Sequence, reason: FinishReason, flush: bool = True) -> None:
        if flush and reason != "cancelled":
            tail = seq.stops.flush() + seq.decoder.decode(b"", final=True)
            if tail:
                self._events.append((seq.req_id, Text(tail, len(seq.generated))))
        done = seq.stats(reason)
        self._release(seq)
        self._events.append((seq.req_id, msgspec.structs.replace(done, kv=self._kv())))

    def _kv(self, admitted: int = 0) -> tuple[int, int]:
        """KV cells in use: by running requests, and in all (with the prefixes kept for reuse). `admitted`: the
        prompt tokens a request just admitted is about to prefill, counted as held already."""
        active = held = admitted
        for slot in self.slots:
            held += len(slot.cached)
            if slot.busy:
                active += len(slot.cached)
        return active, held

    def _fail(self, seq: Sequence, message: str, status: int) -> None:
        self._events.append((seq.req_id, Error(message, status)))
        if seq.slot is not None:  # the KV state of this slot is unknown now: forget it
            ll.llama_memory_seq_rm(self.mem, seq.slot.seq_id, -1, -1)
            seq.slot.cached.clear()
        self._release(seq)

    def _release(self, seq: Sequence) -> None:
        if seq in self.active:
            self.active.remove(seq)
        self.by_id.pop(seq.req_id, None)
        if seq.slot is not None:
            seq.slot.busy = False
            seq.slot = None
        if seq.chain is not None:
            ll.llama_sampler_free(seq.chain)
            seq.chain = None

    def _flush(self) -> None:
        if self._events:
            events, self._events = self._events, []
            self.emit(events)

    def close(self) -> None:
        for seq in list(self.active) + list(self.waiting):
            self._fail(seq, "the model is being unloaded", 503)
        self._flush()
        self.embedder.close()
        ll.llama_batch_free(self.batch)
        ll.llama_free(self.ctx)

