"""`flexi run`: a one-shot streamed answer (/api/generate) or an interactive chat REPL (/api/chat)."""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from flexi.cli.client import CLIError, Client
from flexi.cli.format import WordWrapper, stats_lines
from flexi.i18n import t
from flexi.cli.modelfile import convert_parameter
from flexi.cli.pull import ensure_model
from flexi.cli.show import FIELDS, render_show
from flexi.cli.ui import console

ReadLine = Callable[[str], str]


@dataclass
class RunOptions:
    model: str
    system: str | None = None
    format: str | None = None
    keep_alive: str | int | float | None = None
    verbose: bool = False
    wordwrap: bool = True
    options: dict[str, Any] = field(default_factory=dict)

    def body(self, **extra: Any) -> dict[str, Any]:
        """Fields shared by /api/generate and /api/chat."""
        body: dict[str, Any] = {"model": self.model, "stream": True}
        if self.format:
            body["format"] = self.format
        if self.keep_alive is not None:
            body["keep_alive"] = self.keep_alive
        if self.options:
            body["options"] = dict(self.options)
        body.update(extra)
        return body


class Printer:
    """Streams answer text to stdout; word-wrapped on a terminal; a spinner until the first token."""

    def __init__(self, wordwrap: bool) -> None:
        self.out = sys.stdout
        tty = self.out.isatty()
        width = shutil.get_terminal_size().columns - 5 if wordwrap and tty else 0
        self._wrap = WordWrapper(self._emit, width) if width >= 10 else None
        self._spinner = console(stderr=True).status("") if tty and sys.stderr.isatty() else None
        self.ends_with_newline = True
        if self._spinner:
            self._spinner.start()

    def _emit(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()

    def _stop_spinner(self) -> None:
        if self._spinner:
            self._spinner.stop()
            self._spinner = None

    def write(self, text: str) -> None:
        self._stop_spinner()
        if self._wrap:
            self._wrap.feed(text)
        else:
            self._emit(text)
        self.ends_with_newline = text.endswith("\n")

    def finish(self) -> None:
        self._stop_spinner()
        if self._wrap:
            self._wrap.finish()


def stream_answer(events: Iterator[dict[str, Any]], pick: Callable[[dict[str, Any]], str | None],
                  printer: Printer) -> tuple[str, dict[str, Any]]:
    """Print the text chunks of a stream; return the whole text and the final (done) event."""
    parts: list[str] = []
    final: dict[str, Any] = {}
    try:
        for event in events:
            chunk = pick(event)
            if chunk:
                printer.write(chunk)
                parts.append(chunk)
            if event.get("done"):
                final = event
    finally:
        printer.finish()
        close = getattr(events, "close", None)
        if close:
            close()
    return "".join(parts), final


def print_stats(final: dict[str, Any]) -> None:
    err = console(stderr=True)
    for line in stats_lines(final):
        err.print(line)


def generate_once(client: Client, opts: RunOptions, prompt: str) -> None:
    """Answer one prompt via streaming /api/generate."""
    extra: dict[str, Any] = {"prompt": prompt}
    if opts.system:
        extra["system"] = opts.system
    printer = Printer(opts.wordwrap)
    events = client.stream("POST", "/api/generate", opts.body(**extra))
    text, final = stream_answer(events, lambda e: e.get("response"), printer)
    if text and not printer.ends_with_newline:
        printer.out.write("\n")
    printer.out.flush()
    if opts.verbose and final:
        print_stats(final)


def chat_turn(client: Client, opts: RunOptions, messages: list[dict[str, Any]]) -> dict[str, Any] | None:
    """One streamed /api/chat answer; None if the user pressed Ctrl-C during it."""
    printer = Printer(opts.wordwrap)
    events = client.stream("POST", "/api/chat", opts.body(messages=messages))
    try:
        text, final = stream_answer(events, lambda e: (e.get("message") or {}).get("content"), printer)
    except KeyboardInterrupt:
        printer.out.write("\n")
        printer.out.flush()
        return None
    printer.out.write("\n\n")
    printer.out.flush()
    if opts.verbose and final:
        print_stats(final)
    return {"role": "assistant", "content": text}


def preload(client: Client, opts: RunOptions) -> None:
    """Load the model before the first prompt (empty /api/generate, as Ollama does)."""
    body: dict[str, Any] = {"model": opts.model, "stream": False}
    if opts.keep_alive is not None:
        body["keep_alive"] = opts.keep_alive
    client.request("POST", "/api/generate", body)


def _strip_quotes(text: str) -> str:
    text = text.strip()
    for quote in ('"""', '"'):
        if text.startswith(quote):
            text = text[len(quote):]
            if text.endswith(quote):
                text = text[: -len(quote)]
            break
    return text


def _default_read_line(prompt: str) -> str:
    return input(prompt)


class Repl:
    """The interactive chat loop: history, slash commands, \"\"\" multi-line input."""

    def __init__(self, client: Client, opts: RunOptions, read_line: ReadLine | None = None) -> None:
        self.client, self.opts = client, opts
        self.read_line = read_line or _default_read_line
        self.messages: list[dict[str, Any]] = []
        self._reset()

    def _reset(self) -> None:
        self.messages = [{"role": "system", "content": self.opts.system}] if self.opts.system else []

    def _say(self, text: str) -> None:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()

    def read_entry(self) -> str:
        line = self.read_line(">>> ")
        if line.count('"""') % 2 == 1:
            parts = [line]
            while True:
                more = self.read_line("... ")
                parts.append(more)
                if '"""' in more:
                    break
            line = "\n".join(parts)
        return line

    def run(self) -> None:
        while True:
            try:
                entry = self.read_entry()
            except EOFError:
                self._say("")
                return
            except KeyboardInterrupt:
                self._say("\n" + t("bye_hint"))
                continue
            text = entry.strip()
            if not text:
                continue
            if text.startswith("/"):
                if self.command(text):
                    return
                continue
            if text.startswith('"""'):
                text = _strip_quotes(text)
            self.messages.append({"role": "user", "content": text})
            try:
                answer = chat_turn(self.client, self.opts, self.messages)
            except CLIError as exc:
                self._say(t("error", message=exc.message))
                answer = None
            if answer is not None:
                self.messages.append(answer)

    def command(self, text: str) -> bool:
        """Handle a slash command; True means leave the REPL."""
        word, _, rest = text.partition(" ")
        word, rest = word.lower(), rest.strip()
        if word in ("/bye", "/exit"):
            return True
        if word in ("/?", "/help"):
            self._say(t("repl_help"))
        elif word == "/clear":
            self._reset()
            self._say(t("cleared"))
        elif word == "/set":
            self._set(rest)
        elif word == "/show":
            self._show(rest)
        elif word == "/load":
            self._load(rest)
        else:
            self._say(t("unknown_command", command=word))
        return False

    def _set(self, rest: str) -> None:
        sub, _, arg = rest.partition(" ")
        sub, arg = sub.lower(), arg.strip()
        opts = self.opts
        if sub == "system" and arg:
            opts.system = _strip_quotes(arg)
            self.messages = [m for m in self.messages if m.get("role") != "system"]
            self.messages.insert(0, {"role": "system", "content": opts.system})
            self._say(t("system_set"))
        elif sub == "parameter" and len(arg.split(maxsplit=1)) == 2:
            name, value = arg.split(maxsplit=1)
            try:
                converted = convert_parameter(name, _strip_quotes(value))
            except ValueError as exc:
                self._say(t("error", message=str(exc)))
                return
            opts.options[name.lower()] = converted
            self._say(t("parameter_set", name=name, value=value))
        elif sub in ("verbose", "quiet"):
            opts.verbose = sub == "verbose"
            self._say(t("verbose_on" if opts.verbose else "quiet_on"))
        elif sub == "format" and arg == "json":
            opts.format = "json"
            self._say(t("format_json"))
        elif sub == "noformat":
            opts.format = None
            self._say(t("format_off"))
        elif sub in ("wordwrap", "nowordwrap"):
            opts.wordwrap = sub == "wordwrap"
            self._say(t("wordwrap_on" if opts.wordwrap else "wordwrap_off"))
        else:
            self._say(t("usage_set"))

    def _show(self, what: str) -> None:
        what = what.lower()
        if what not in ("info", *FIELDS):
            self._say(t("usage_show"))
            return
        try:
            resp = self.client.show(self.opts.model)
        except CLIError as exc:
            self._say(t("error", message=exc.message))
            return
        if what == "info":
            self._say(render_show(resp))
        elif resp.get(what):
            self._say(str(resp[what]).rstrip("\n"))
        else:
            self._say(t("nothing_to_show", what=what))

    def _load(self, model: str) -> None:
        if not model:
            self._say(t("usage_load"))
            return
        self._say(t("loading", name=model))
        previous = self.opts.model
        try:
            ensure_model(self.client, model)
            self.opts.model = model
            preload(self.client, self.opts)
        except CLIError as exc:
            self.opts.model = previous
            self._say(t("error", message=exc.message))
            return
        self._reset()
