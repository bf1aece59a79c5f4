"""Thinking through remote engines, with the official `ollama` client: an engine's separate reasoning (Ollama's
`thinking`, vLLM's and llama-server's `reasoning_content`) becomes the answer's `thinking`, apart from its content.

The default model does not reason, so the engine here is a small scripted one in the suite speaking both
dialects the way Ollama and vLLM stream a reasoning model's answer; it records what Flexi sent it."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import ollama
import pytest

from tests.conftest import RunningServer, start_server, stop_server


@dataclass
class Engine:
    url: str
    received: list[dict[str, Any]] = field(default_factory=list)


def _handler(engine: Engine) -> type[BaseHTTPRequestHandler]:
    class Reasoner(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # Flexi's health probes (/api/version, /health)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b'{"version": "0.13.0", "status": "ok"}')

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
            engine.received.append({"path": self.path, **body})
            self.send_response(200)
            self.end_headers()
            if self.path == "/api/chat":  # Ollama: thinking first, then the answer
                for chunk in ({"message": {"role": "assistant", "content": "", "thinking": "Two and "}, "done": False},
                              {"message": {"role": "assistant", "content": "", "thinking": "two."}, "done": False},
                              {"message": {"role": "assistant", "content": "4"}, "done": False},
                              {"message": {"role": "assistant", "content": ""}, "done": True, "done_reason": "stop",
                               "prompt_eval_count": 11, "eval_count": 5}):
                    self.wfile.write((json.dumps(chunk) + "\n").encode())
            else:  # vLLM: reasoning_content in the deltas
                for chunk in ({"choices": [{"delta": {"reasoning_content": "Two and "}}]},
                              {"choices": [{"delta": {"reasoning_content": "two."}}]},
                              {"choices": [{"delta": {"content": "4"}, "finish_reason": "stop"}]},
                              {"choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": 5}}, "[DONE]"):
                    self.wfile.write(f"data: {chunk if isinstance(chunk, str) else json.dumps(chunk)}\n\n".encode())
            self.close_connection = True

    return Reasoner


@dataclass
class Stack:
    flexi: RunningServer
    engine: Engine


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    engine = Engine(f"http://127.0.0.1:{httpd.server_address[1]}")
    httpd.RequestHandlerClass = _handler(engine)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    home: Path = tmp_path_factory.mktemp("remote-thinking") / "home"
    home.mkdir()
    (home / "config.toml").write_text(f'''
[[backends]]
name = "ollama-reasoner"
url = "{engine.url}"
kind = "ollama"
models = {{ "think-ollama" = "qwen3" }}
capabilities = ["completion", "tools", "thinking"]

[[backends]]
name = "vllm-reasoner"
url = "{engine.url}/v1"
kind = "vllm"
models = {{ "think-vllm" = "Qwen/Qwen3-8B" }}
capabilities = ["completion", "thinking"]
''')
    flexi = start_server(home)
    try:
        yield Stack(flexi, engine)
    finally:
        stop_server(flexi)
        httpd.shutdown()


QUESTION = [{"role": "user", "content": "What is 2+2?"}]


@pytest.mark.parametrize("name", ["think-ollama", "think-vllm"])
def test_thinking_comes_back_apart_from_the_answer(stack: Stack, name: str) -> None:
    client = ollama.Client(host=stack.flexi.url, timeout=60)
    answer = client.chat(model=name, messages=QUESTION, think=True)
    assert (answer.message.thinking, answer.message.content) == ("Two and two.", "4")
    assert (answer.prompt_eval_count, answer.eval_count) == (11, 5)
    sent = stack.engine.received[-1]
    assert sent["think"] is True if name == "think-ollama" else sent["chat_template_kwargs"] == {"enable_thinking": True}
    parts = list(client.chat(model=name, messages=QUESTION, think=True, stream=True))
    assert "".join(p.message.thinking or "" for p in parts) == "Two and two."
    assert "".join(p.message.content for p in parts) == "4" and parts[-1].done
    generated = client.generate(model=name, prompt="What is 2+2?", think=True)
    assert (generated.thinking, generated.response) == ("Two and two.", "4")


@pytest.mark.parametrize("name", ["think-ollama", "think-vllm"])
def test_without_think_the_reasoning_stays_out(stack: Stack, name: str) -> None:
    answer = ollama.Client(host=stack.flexi.url, timeout=60).chat(model=name, messages=QUESTION)
    assert answer.message.content == "4" and not answer.message.thinking
    sent = stack.engine.received[-1]
    assert "think" not in sent and "chat_template_kwargs" not in sent
