"""Citations point to the right document and page, through Ollama's /api/chat (streamed) and the official
OpenAI client (issue 13's proof, API part; the browser part is tests/web/test_documents_ui.py).

The model must write [n] itself: the server never invents a citation. The tiny test model does so for a
question that asks for the passage number, when the search quotes one passage. So this server searches
by words only (no embedding model: the dense half would add the document's other pages as weaker
passages, and the tiny model then continues the list with an invented [4]); a real model cites without
such help."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from tests.campus.test_documents import CITE_QUESTION, Course, _optics_assistant, open_course
from tests.conftest import start_server, stop_server

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def course(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Course]:
    srv = start_server(tmp_path_factory.mktemp("citations") / "home", {"FLEXI_AUTH": "on"})
    c = open_course(srv)
    try:
        yield c
    finally:
        c.db.close()
        stop_server(srv)


def test_citations_point_to_the_right_document_and_page_through_api_chat_and_the_openai_client(course: Course) -> None:
    """The model writes [1] (a tiny model needs a question that asks for the number; a bigger one cites on
    its own) and the server maps it to the PDF's page 2, where the sentence is — in Ollama's /api/chat,
    streamed, and in the official OpenAI client."""
    import openai

    slug = _optics_assistant(course)
    question = [{"role": "user", "content": CITE_QUESTION}]
    english = {**course.keys["student"], "Accept-Language": "en"}  # the rules and sources in the question's language
    with httpx.stream("POST", course.srv.url + "/api/chat", headers=english, timeout=120,
                      json={"model": f"assistant/{slug}", "messages": question}) as r:
        lines = [json.loads(line) for line in r.iter_lines() if line]
    answer = "".join(line.get("message", {}).get("content", "") for line in lines)
    cited = lines[-1]["citations"]
    assert cited, f"the model cited nothing: {answer!r}"
    assert {(c["document"], c["page"]) for c in cited} == {("optics-script.pdf", 2)}, (answer, cited)
    assert "1.33" in cited[0]["text"]
    oa = openai.OpenAI(base_url=course.srv.url + "/v1", api_key=course.keys["student"]["Authorization"][7:],
                       default_headers={"Accept-Language": "en"})
    done = oa.chat.completions.create(model=f"assistant/{slug}", messages=question)  # type: ignore[arg-type]
    extra = done.choices[0].message.model_extra or {}
    assert [(c["document"], c["page"]) for c in extra["citations"]] == [("optics-script.pdf", 2)], done
