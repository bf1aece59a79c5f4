"""lm-eval models talking to a Flexi server: completions for log-likelihood tasks, chat for generative ones.

`FlexiCompletions` is lm-eval's `local-completions` without a tokenizer: it sends `context + continuation`
with `echo` and `logprobs` to /v1/completions (several prompts per request) and finds the continuation by
character offsets (`logprobs.py`). Generative tasks go through lm-eval's own `local-chat-completions`, so
the server applies the model's chat template. Imported only when lm-eval is installed (extra `eval`).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from lm_eval.models.openai_completions import LocalChatCompletion, LocalCompletionsAPI

from flexi.eval.errors import EvalError
from flexi.eval.logprobs import LogprobsMissing, continuation_logprob
from flexi.i18n import t

LOGLIKELIHOOD_TYPES = {"loglikelihood", "multiple_choice", "loglikelihood_rolling"}


class FlexiCompletions(LocalCompletionsAPI):
    """Log-likelihoods from /v1/completions with echo + logprobs; generation through the same endpoint."""

    def __init__(self, base_url: str, model: str, headers: dict[str, str], batch_size: int = 8,
                 timeout: float = 600.0, transport: httpx.BaseTransport | None = None, concurrent: int = 1) -> None:
        super().__init__(base_url=base_url, model=model, tokenizer_backend=None, tokenized_requests=False,
                         header=headers, batch_size=batch_size, timeout=int(timeout), max_retries=2)
        self._headers = headers
        self._timeout = timeout
        self._transport = transport  # tests put a fake server here
        self._in_flight = max(1, concurrent)

    def _logprob_batch(self, client: httpx.Client, pairs: list[tuple[str, str]]) -> list[tuple[float, bool]]:
        body = {"model": self.model, "prompt": [c + x for c, x in pairs], "max_tokens": 1, "echo": True,
                "logprobs": 1, "temperature": 0}
        try:
            response = client.post(self.base_url, json=body, headers=self._headers)
        except httpx.HTTPError as exc:
            raise EvalError(t("eval_request_failed", url=self.base_url, detail=str(exc) or type(exc).__name__)) from None
        if response.status_code != 200:
            raise EvalError(t("eval_logprobs_refused", status=response.status_code, detail=response.text[:300]))
        choices = sorted(response.json().get("choices") or [], key=lambda c: c.get("index", 0))
        if len(choices) != len(pairs):
            raise EvalError(t("eval_no_logprobs", detail=f"{len(choices)} choices for {len(pairs)} prompts"))
        try:
            return [continuation_logprob(choice.get("logprobs"), len(context), len(context) + len(continuation))
                    for (context, continuation), choice in zip(pairs, choices, strict=True)]
        except LogprobsMissing as exc:
            raise EvalError(t("eval_no_logprobs", detail=str(exc))) from None

    def loglikelihood(self, requests: list[Any], disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        pairs = [tuple(req.args) for req in requests]
        batches = [pairs[i:i + self._batch_size] for i in range(0, len(pairs), self._batch_size)]
        limits = httpx.Limits(max_connections=self._in_flight)
        with httpx.Client(timeout=httpx.Timeout(self._timeout, connect=10), transport=self._transport,
                          limits=limits) as client, ThreadPoolExecutor(self._in_flight) as pool:
            answers = pool.map(lambda batch: self._logprob_batch(client, batch), batches)  # keeps the order
            return [answer for batch in answers for answer in batch]

    def loglikelihood_rolling(self, requests: list[Any], disable_tqdm: bool = False) -> list[float]:
        raise EvalError(t("eval_rolling_unsupported"))


def completions_model(url: str, model: str, headers: dict[str, str], timeout: float,
                      concurrent: int = 1) -> FlexiCompletions:
    return FlexiCompletions(url + "/v1/completions", model, headers, timeout=timeout, concurrent=concurrent)


def chat_model(url: str, model: str, headers: dict[str, str], timeout: float, concurrent: int = 1) -> LocalChatCompletion:
    """lm-eval's chat backend on Flexi's /v1/chat/completions (no tokenizer: the server renders the chat)."""
    return LocalChatCompletion(base_url=url + "/v1/chat/completions", model=model, header=headers,
                               tokenizer_backend=None, tokenized_requests=False, timeout=int(timeout),
                               max_retries=2, num_concurrent=concurrent)
