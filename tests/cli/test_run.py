"""`flexi run`: one-shot answers, auto-pull, stats, and the interactive chat REPL."""

from __future__ import annotations

from typing import Iterator

import pytest
from typer.testing import CliRunner

from flexi.cli import chat, main
from flexi.cli.main import app
from tests.cli.test_fake import FakeOllama

ENGLISH = {"LC_ALL": None, "LC_MESSAGES": None, "LANG": "en_US.UTF-8", "FLEXI_API_KEY": None,
           "FORCE_COLOR": None, "TTY_COMPATIBLE": None}


@pytest.fixture
def fake() -> Iterator[FakeOllama]:
    with FakeOllama() as server:
        yield server


def invoke(fake: FakeOllama, *args: str, input: str | None = None, **env: str | None):
    return CliRunner().invoke(app, list(args), input=input, env={**ENGLISH, "FLEXI_HOST": fake.url, **env})


@pytest.fixture
def tty(monkeypatch):
    """Pretend stdin is a terminal so `run` without a prompt starts the REPL."""
    monkeypatch.setattr(main, "stdin_is_tty", lambda: True)


def chat_bodies(fake: FakeOllama) -> list[dict]:
    return [r.json for r in fake.requests if r.path == "/api/chat"]


# --- one-shot -------------------------------------------------------------------
def test_run_with_prompt_streams_generate(fake):
    result = invoke(fake, "run", "smollm2:135m", "Why", "is", "the", "sky", "blue?")
    assert result.exit_code == 0, result.output
    assert result.stdout == "Hello, world!\n"
    assert fake.paths() == ["POST /api/show", "POST /api/generate"]
    assert fake.last("POST", "/api/generate").json == {
        "model": "smollm2:135m", "stream": True, "prompt": "Why is the sky blue?"}


def test_run_sends_system_format_and_keep_alive(fake):
    result = invoke(fake, "run", "smollm2:135m", "hi", "--system", "Be brief.", "--format", "json",
                    "--keep-alive", "10m")
    assert result.exit_code == 0, result.output
    body = fake.last("POST", "/api/generate").json
    assert body["system"] == "Be brief." and body["format"] == "json" and body["keep_alive"] == "10m"


def test_run_numeric_keep_alive_is_sent_as_number(fake):
    invoke(fake, "run", "smollm2:135m", "hi", "--keep-alive", "-1")
    assert fake.last("POST", "/api/generate").json["keep_alive"] == -1


def test_run_rejects_bad_keep_alive_and_format(fake):
    result = invoke(fake, "run", "smollm2:135m", "hi", "--keep-alive", "soon")
    assert result.exit_code == 1 and 'invalid duration "soon"' in result.stderr
    result = invoke(fake, "run", "smollm2:135m", "hi", "--format", "yaml")
    assert result.exit_code == 1 and "yaml" in result.stderr
    assert fake.requests == []


def test_run_prepends_piped_stdin_to_prompt(fake):
    result = invoke(fake, "run", "smollm2:135m", "Summarize.", input="Some notes.")
    assert result.exit_code == 0, result.output
    assert fake.last("POST", "/api/generate").json["prompt"] == "Some notes. Summarize."


def test_run_verbose_prints_stats(fake):
    result = invoke(fake, "run", "smollm2:135m", "hi", "--verbose")
    assert result.exit_code == 0, result.output
    assert result.stdout == "Hello, world!\n"
    err = result.stderr.splitlines()
    assert err == [
        "total duration:       1.5s",
        "load duration:        2.1ms",
        "prompt eval count:    10 token(s)",
        "prompt eval duration: 50ms",
        "prompt eval rate:     200.00 tokens/s",
        "eval count:           4 token(s)",
        "eval duration:        200ms",
        "eval rate:            20.00 tokens/s",
    ]


def test_run_pulls_a_missing_model_first(fake):
    result = invoke(fake, "run", "tinyllama:1b", "hi")
    assert result.exit_code == 0, result.output
    assert fake.paths() == ["POST /api/show", "POST /api/pull", "POST /api/generate"]
    assert "success" in result.stderr and result.stdout == "Hello, world!\n"


def test_run_fails_when_pull_fails(fake):
    result = invoke(fake, "run", "missing:1b", "hi")
    assert result.exit_code == 1
    assert "Error: pull model manifest: file does not exist" in result.stderr
    assert "POST /api/generate" not in fake.paths()


# --- interactive REPL -----------------------------------------------------------
def test_repl_keeps_history_and_exits_on_bye(fake, tty):
    result = invoke(fake, "run", "smollm2:135m", input="Hello\nAgain\n/bye\n")
    assert result.exit_code == 0, result.output
    assert ">>> " in result.stdout and "You said: Hello" in result.stdout and "You said: Again" in result.stdout
    first, second = chat_bodies(fake)
    assert first["messages"] == [{"role": "user", "content": "Hello"}]
    assert second["messages"] == [
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "You said: Hello"},
        {"role": "user", "content": "Again"},
    ]
    assert first["stream"] is True
    # the model is loaded before the first prompt, like Ollama
    assert fake.paths()[:2] == ["POST /api/show", "POST /api/generate"]


def test_repl_ends_on_eof(fake, tty):
    result = invoke(fake, "run", "smollm2:135m", input="Hi\n")
    assert result.exit_code == 0, result.output
    assert len(chat_bodies(fake)) == 1


def test_repl_clear_and_set_system(fake, tty):
    script = "One\n/set system Antworte auf Deutsch.\nTwo\n/clear\nThree\n/bye\n"
    result = invoke(fake, "run", "smollm2:135m", "--system", "Be brief.", input=script)
    assert result.exit_code == 0, result.output
    assert "Set system message." in result.stdout and "Cleared session context" in result.stdout
    one, two, three = (b["messages"] for b in chat_bodies(fake))
    assert one == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "One"}]
    assert two[0] == {"role": "system", "content": "Antworte auf Deutsch."} and len(two) == 4
    assert three == [{"role": "system", "content": "Antworte auf Deutsch."}, {"role": "user", "content": "Three"}]


def test_repl_multiline_input(fake, tty):
    result = invoke(fake, "run", "smollm2:135m", input='"""First line\nsecond line\n"""\n/bye\n')
    assert result.exit_code == 0, result.output
    assert chat_bodies(fake)[0]["messages"][-1]["content"] == "First line\nsecond line\n"
    assert "... " in result.stdout


def test_repl_set_parameter_format_and_verbose(fake, tty):
    script = "/set parameter temperature 0.1\n/set format json\n/set verbose\nHi\n/bye\n"
    result = invoke(fake, "run", "smollm2:135m", input=script)
    assert result.exit_code == 0, result.output
    body = chat_bodies(fake)[0]
    assert body["options"] == {"temperature": 0.1} and body["format"] == "json"
    assert "eval rate:            20.00 tokens/s" in result.stderr


def test_repl_unknown_command_and_help(fake, tty):
    result = invoke(fake, "run", "smollm2:135m", input="/nope\n/?\n/bye\n")
    assert "Unknown command '/nope'. Type /? for help" in result.stdout
    assert "/clear" in result.stdout and chat_bodies(fake) == []


def test_repl_show_commands(fake, tty):
    result = invoke(fake, "run", "smollm2:135m", input="/show system\n/show info\n/bye\n")
    assert "You are a helpful assistant." in result.stdout and "architecture" in result.stdout


def test_repl_in_german(fake, tty):
    result = invoke(fake, "run", "smollm2:135m", input="/clear\n/bye\n", LANG="de_DE.UTF-8")
    assert "Sitzungsverlauf gelöscht" in result.stdout


def test_ctrl_c_stops_the_answer_but_keeps_the_repl(fake, tty, monkeypatch):
    calls = {"n": 0}
    original = chat.Printer.write

    def interrupt_first_answer(self, text):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        original(self, text)

    monkeypatch.setattr(chat.Printer, "write", interrupt_first_answer)
    result = invoke(fake, "run", "smollm2:135m", input="Stop me\nNext\n/bye\n")
    assert result.exit_code == 0, result.output
    first, second = chat_bodies(fake)
    # the interrupted answer is not kept in the history
    assert second["messages"] == [{"role": "user", "content": "Stop me"}, {"role": "user", "content": "Next"}]
    assert "You said: Next" in result.stdout


def test_repl_load_pulls_and_switches_model(fake, tty):
    result = invoke(fake, "run", "smollm2:135m", input="/load ghost:1\nHi\n/bye\n")
    assert result.exit_code == 0, result.output
    assert "POST /api/pull" in fake.paths()
    assert chat_bodies(fake)[0]["model"] == "ghost:1"


def test_repl_error_keeps_the_session(fake, tty):
    result = invoke(fake, "run", "smollm2:135m", input="/load missing:1\nHi\n/bye\n")
    assert result.exit_code == 0, result.output
    assert "Error: pull model manifest: file does not exist" in result.stdout
    assert chat_bodies(fake)[0]["model"] == "smollm2:135m"
