"""`flexi rag eval` without a server: the metrics on hand-computed cases, the shipped corpus, the runner
with a deterministic stand-in embedder and chat, the report files and the CLI's option checks."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from flexi.rag.chunking import Chunk, chunk_document
from flexi.rag.eval_report import write
from flexi.rag.eval_run import Settings, combined, evaluate, limited
from flexi.rag.evalcorpus import (
    EvalSet,
    EvalSetError,
    Question,
    parse_questions,
    shipped_folder,
    shipped_set,
    slides_to_pptx,
)
from flexi.rag.evaluation import (
    GoldRef,
    check_sentence,
    citation_accuracy,
    first_match_rank,
    groundedness,
    matches,
    mean,
    mean_reciprocal_rank,
    recall_at_k,
    sentences,
)
from flexi.rag.loaders import load


def chunk(document: str, page: int | None = None, headings: tuple[str, ...] = (), text: str = "x", ordinal: int = 0) -> Chunk:
    return Chunk(document, document, page, headings, text, ordinal)


# --- metrics ------------------------------------------------------------------------------------------

def test_a_gold_page_matches_only_that_page_of_that_document() -> None:
    gold = GoldRef("slides.pptx", page=3)
    assert matches(gold, chunk("slides.pptx", 3))
    assert not matches(gold, chunk("slides.pptx", 4))
    assert not matches(gold, chunk("other.pptx", 3))


def test_a_gold_heading_matches_any_level_of_the_heading_path_ignoring_case() -> None:
    gold = GoldRef("notes.md", heading="Measures of spread")
    assert matches(gold, chunk("notes.md", None, ("Descriptive Statistics", "measures of SPREAD")))
    assert matches(gold, chunk("notes.md", None, ("Measures of spread", "Variance")))
    assert not matches(gold, chunk("notes.md", None, ("Descriptive Statistics", "Graphics")))
    assert not matches(gold, chunk("notes.md", None, ()))
    assert matches(GoldRef("notes.md"), chunk("notes.md", None, ()))  # document only: any chunk of it


def test_recall_and_mrr_by_hand() -> None:
    gold = [GoldRef("a", page=1)]
    retrieved = [chunk("b", 1), chunk("a", 2), chunk("a", 1), chunk("a", 1)]
    assert first_match_rank(retrieved, gold, k=5) == 3
    assert first_match_rank(retrieved, gold, k=2) is None
    ranks = [1, 3, None, 2]
    assert recall_at_k(ranks, 5) == 0.75
    assert recall_at_k(ranks, 2) == 0.5
    assert recall_at_k(ranks, 1) == 0.25
    assert mean_reciprocal_rank(ranks, 5) == pytest.approx((1 + 1 / 3 + 0 + 1 / 2) / 4)
    assert mean_reciprocal_rank(ranks, 2) == pytest.approx((1 + 0 + 0 + 1 / 2) / 4)
    assert recall_at_k([], 5) == 0.0 and mean_reciprocal_rank([], 5) == 0.0


def test_citation_accuracy_counts_each_cited_number_once_and_invented_numbers_as_wrong() -> None:
    passages = [chunk("a", 1), chunk("b", 2), chunk("a", 1, ordinal=1)]
    gold = [GoldRef("a", page=1)]
    assert citation_accuracy("Mean [1]. Median [2][3]. Again [1]. Made up [9].", passages, gold) == 2 / 4
    assert citation_accuracy("All from [1] and [3].", passages, gold) == 1.0
    assert citation_accuracy("No citation at all.", passages, gold) is None


def test_sentences_split_at_sentence_ends_and_lines_not_inside_numbers() -> None:
    assert sentences("The mean is 3.5 here. Is it? Yes!\n- a list item\n\n") == [
        "The mean is 3.5 here.", "Is it?", "Yes!", "- a list item"]


def test_a_sentence_is_supported_when_half_of_its_content_terms_are_in_what_it_cites() -> None:
    passages = ["The median is robust against outliers.", "Variance divided by n minus one."]
    # terms: median, robust, outlier (stemmed), skewed → 3 of 4 in passage 1
    check = check_sentence("The median is robust to outliers in skewed data [1].", passages)
    assert check is not None and check.supported and check.terms == 5 and check.overlap == pytest.approx(3 / 5)
    # the same sentence citing the wrong passage: nothing of it there
    wrong = check_sentence("The median is robust to outliers in skewed data [2].", passages)
    assert wrong is not None and not wrong.supported and wrong.overlap == 0.0
    # uncited: the best single passage counts
    assert check_sentence("The median is robust.", passages).supported  # type: ignore[union-attr]
    # citing only numbers no passage has: unsupported
    assert not check_sentence("The median is robust [7].", passages).supported  # type: ignore[union-attr]
    # too few content terms: not counted
    assert check_sentence("Yes [1].", passages) is None


def test_groundedness_is_the_share_of_counted_sentences_supported() -> None:
    passages = ["The median is robust against outliers.", "Bessel's correction divides by n minus one."]
    answer = ("The median is robust against outliers [1]. Bessel's correction divides by n minus one [2]. "
              "Dragons breathe fire in medieval tales [1]. Yes.")
    assert groundedness(answer, passages) == pytest.approx(2 / 3)
    assert groundedness("Yes. No.", passages) is None
    assert mean([None, 1.0, 0.5]) == 0.75 and mean([None]) is None


# --- corpus -------------------------------------------------------------------------------------------

def test_question_files_are_checked() -> None:
    with pytest.raises(EvalSetError):
        parse_questions({"questions": [{"question": "Why?"}]})
    with pytest.raises(EvalSetError):
        parse_questions({"questions": [{"question": "Why?", "gold": []}]})
    language, questions = parse_questions({"language": "de", "questions": [
        {"question": "Warum?", "gold": [{"document": "a.md", "heading": "H"}, {"document": "b.txt", "page": "2"}]}]})
    assert language == "de" and questions[0].gold == (GoldRef("a.md", heading="H"), GoldRef("b.txt", page=2))


def test_slide_sources_become_pptx_with_slide_numbers_titles_and_notes() -> None:
    data = slides_to_pptx("# First\nIntro line\n---\n# Second slide\nBody one\nBody two\nNotes: spoken words\n")
    doc = load(data, "deck.pptx", max_pages=10, max_unpacked_bytes=64 * 1024**2)
    assert (doc.format, doc.page_count) == ("pptx", 2)
    second = doc.page_text(2)
    assert "Body one" in second and "Body two" in second and "spoken words" in second
    assert next(s.heading_path for s in doc.sections if s.page == 2) == ["Second slide"]


@pytest.mark.parametrize("language", ["en", "de"])
def test_the_shipped_set_is_complete_and_every_gold_place_exists(language: str) -> None:
    eval_set = shipped_set(language)
    assert 25 <= len(eval_set.questions) <= 40 and len({q.id for q in eval_set.questions}) == len(eval_set.questions)
    assert {q.style for q in eval_set.questions} == {"term", "paraphrase"}
    docs = {name: load(data, name, max_pages=100, max_unpacked_bytes=64 * 1024**2) for name, data in eval_set.documents}
    assert 6 <= len(docs) <= 10
    assert {d.format for d in docs.values()} >= {"markdown", "pptx", "text"}
    assert any(d.page_count for d in docs.values())
    chunks = [c for i, (name, d) in enumerate(docs.items()) for c in chunk_document(d, i, name)]
    for q in eval_set.questions:
        for g in q.gold:
            assert any(matches(g, c) for c in chunks), (q.id, g)


def test_the_corpus_ships_with_its_licence() -> None:
    root = shipped_folder()
    assert "CC BY 4.0" in (root / "LICENSE").read_text("utf-8")
    assert "written for the Flexi project" in (root / "LICENSE").read_text("utf-8")
    assert (root / "README.md").is_file()


# --- runner and report ----------------------------------------------------------------------------------

def hashed_embed(texts: list[str]) -> list[list[float]]:
    """A deterministic bag-of-words embedder: each lower-cased word adds 1 to a hashed dimension."""
    out = []
    for text in texts:
        v = np.zeros(64, np.float32)
        for word in re.findall(r"\w+", text.lower()):
            v[int(hashlib.md5(word.encode()).hexdigest(), 16) % 64] += 1
        out.append(v.tolist())
    return out


TINY = EvalSet("tiny", "en", [
    ("alpha.md", b"# Alpha\n\n## Variance\n\nThe variance is the mean squared deviation.\n\n## Median\n\nThe median is the middle value.\n"),
    ("beta.txt", b"Poisson counts rare events.\fThe normal distribution is bell shaped."),
], [
    Question("q1", "What is the variance?", (GoldRef("alpha.md", heading="Variance"),)),
    Question("q2", "Which distribution is bell shaped?", (GoldRef("beta.txt", page=2),)),
    Question("q3", "Who counts rare events?", (GoldRef("beta.txt", page=1),)),
])


def test_every_configuration_gets_a_row_and_retrieval_finds_the_gold_places() -> None:
    settings = Settings(k=1, chunk_sizes=(50, 200))
    rows = evaluate([TINY], {"hash": hashed_embed}, settings)
    assert [(r.chunk_tokens, r.mode, r.embedding_model) for r in rows] == [
        (50, "lexical", None), (50, "dense", "hash"), (50, "hybrid", "hash"),
        (200, "lexical", None), (200, "dense", "hash"), (200, "hybrid", "hash")]
    lexical = rows[0]
    assert lexical.questions == 3 and lexical.chunks == 4  # alpha: two sections, beta: two pages
    assert lexical.ranks == {"q1": 1, "q2": 1, "q3": 1} and lexical.recall == 1.0 and lexical.mrr == 1.0
    assert all(r.answers == 0 and r.citation_accuracy is None for r in rows)


def test_answers_are_scored_for_hybrid_rows_only_and_within_the_limit() -> None:
    seen: list[list[dict]] = []

    def chat(messages: list[dict]) -> str:
        seen.append(messages)
        return "It is in the material [1]. Unrelated dragons fly over mountains [2]."

    rows = evaluate([limited(TINY, 2)], {"hash": hashed_embed}, Settings(k=2, chunk_sizes=(200,), answer_limit=1), chat=chat)
    hybrid = next(r for r in rows if r.mode == "hybrid")
    assert len(seen) == 1 and hybrid.answers == 1 and hybrid.answers_citing == 1
    assert "Answer only from the course material" in seen[0][0]["content"]
    assert "<<<passage [1]" in seen[0][-1]["content"] and seen[0][-1]["content"].endswith("Question: What is the variance?")
    assert hybrid.citation_accuracy == 0.5  # [1] is the gold section, [2] is not
    assert hybrid.groundedness is not None and hybrid.groundedness < 1.0
    assert all(r.answers == 0 for r in rows if r.mode != "hybrid")


def test_combined_rows_weigh_each_question_once(tmp_path: Path) -> None:
    a = evaluate([TINY], {"hash": hashed_embed}, Settings(k=1, chunk_sizes=(200,), modes=("lexical",)))
    other = EvalSet("other", "en", TINY.documents, [Question("z", "What is a dragon?", (GoldRef("alpha.md", heading="Median"),))])
    b = evaluate([other], {}, Settings(k=1, chunk_sizes=(200,), modes=("lexical",)))
    (merged,) = combined(a + b)
    assert merged.set == "all" and merged.questions == 4 and merged.recall == 0.75

    paths = write(tmp_path / "report", a + b + [merged], {"command": "flexi rag eval --set all"})
    text = paths["markdown"].read_text("utf-8")
    assert "| tiny | 200 | lexical | – | 3 |" in text and "| all | 200 | lexical | – | 4 |" in text
    assert "command: flexi rag eval --set all" in text
    assert "- tiny, 200 tokens, lexical: none" in text and "- other, 200 tokens, lexical: z" in text
    data = json.loads(paths["json"].read_text("utf-8"))
    assert [r["set"] for r in data["results"]] == ["tiny", "other", "all"] and data["results"][2]["recall"] == 0.75
    assert paths["chart"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_dense_modes_need_an_embedder() -> None:
    with pytest.raises(ValueError):
        evaluate([TINY], {}, Settings(modes=("hybrid",)))


# --- CLI option checks (no server needed: they fail before any request) --------------------------------------

@pytest.fixture()
def rag_cli() -> typer.Typer:
    from flexi.cli.rag_eval import register

    app = typer.Typer()
    rag = typer.Typer()
    register(rag)
    app.add_typer(rag, name="rag")
    return app


@pytest.mark.parametrize(("args", "message"), [
    (["--set", "fr"], "unknown question set 'fr'"),
    (["--questions", "q.json"], "--questions and --docs belong together"),
    (["--chunk-sizes", "100,abc"], "--chunk-sizes wants whole numbers"),
    (["--chunk-sizes", "8"], "--chunk-sizes wants whole numbers"),
    (["--modes", "hybrid,sparse"], "unknown retrieval mode 'sparse'"),
])
def test_bad_options_are_clear_errors(rag_cli: typer.Typer, args: list[str], message: str,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LANG", "en_US.UTF-8")
    monkeypatch.delenv("LC_ALL", raising=False)
    monkeypatch.delenv("LC_MESSAGES", raising=False)
    result = CliRunner().invoke(rag_cli, ["rag", "eval", *args])
    assert result.exit_code == 1
    assert message in result.output


def test_errors_are_german_for_a_german_shell(rag_cli: typer.Typer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LC_ALL", "de_DE.UTF-8")
    result = CliRunner().invoke(rag_cli, ["rag", "eval", "--set", "fr"])
    assert result.exit_code == 1 and "Fehler: Unbekannter Fragensatz 'fr'" in result.output


def test_a_teachers_set_naming_a_missing_document_is_refused(rag_cli: typer.Typer, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LC_ALL", "en_US.UTF-8")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# A\n\ntext\n")
    (tmp_path / "q.json").write_text(json.dumps({"questions": [{"question": "?", "gold": [{"document": "b.md"}]}]}))
    result = CliRunner().invoke(rag_cli, ["rag", "eval", "--questions", str(tmp_path / "q.json"), "--docs", str(tmp_path / "docs")])
    assert result.exit_code == 1 and "b.md" in result.output
