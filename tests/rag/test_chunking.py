"""Chunking by structure: pages, headings, size limit, overlap, tables and text without spaces."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flexi.rag.chunking import Chunk, approx_tokens, chunk_document
from flexi.rag import document


def Section(page: int | None, heading_path: list[str], text: str) -> document.Section:  # noqa: N802 - reads like the type
    return document.Section(text=text, page=page, heading_path=list(heading_path))


def doc(*sections: document.Section, title: str = "Skript") -> document.ParsedDocument:
    return document.ParsedDocument(title, "pdf", list(sections), page_count=max([s.page or 0 for s in sections], default=0))


def sentences(n: int, word: str = "Satz") -> str:
    return " ".join(f"Das ist {word} Nummer {i}." for i in range(n))


def words(text: str) -> int:
    return len(text.split())


def test_approx_tokens_counts_words_by_length_and_punctuation() -> None:
    assert approx_tokens("") == 0
    assert approx_tokens("Hallo Welt.") == 3
    assert approx_tokens("Prüfungsordnung") == 3  # 15 characters: three started blocks of 6
    assert approx_tokens("x" * 600) == 100


def test_small_sections_keep_document_page_heading_and_ordinals() -> None:
    chunks = chunk_document(doc(Section(1, ["Kapitel 1", "Einleitung"], "Erster Absatz."),
                                Section(2, ["Kapitel 1", "Ziele"], "Zweiter Absatz."),
                                Section(None, [], "Ohne Seite.")), document_id=42)
    assert chunks == [
        Chunk(42, "Skript", 1, ("Kapitel 1", "Einleitung"), "Erster Absatz.", 0),
        Chunk(42, "Skript", 2, ("Kapitel 1", "Ziele"), "Zweiter Absatz.", 1),
        Chunk(42, "Skript", None, (), "Ohne Seite.", 2),
    ]
    assert chunks[0].heading == "Kapitel 1 › Einleitung"
    assert chunks[0].search_text == "Kapitel 1 › Einleitung\nErster Absatz."
    assert chunks[2].search_text == "Ohne Seite."


def test_name_overrides_the_title() -> None:
    assert chunk_document(doc(Section(1, [], "Text.")), "d", name="vl01.pdf")[0].document == "vl01.pdf"


def test_never_merges_across_pages_or_headings_but_joins_sections_with_the_same_place() -> None:
    chunks = chunk_document(doc(Section(1, ["A"], "Eins."), Section(1, ["A"], "Zwei."), Section(2, ["A"], "Drei."),
                                Section(2, ["B"], "Vier.")), "d", max_tokens=100)
    assert [(c.page, c.heading_path, c.text) for c in chunks] == [
        (1, ("A",), "Eins.\n\nZwei."), (2, ("A",), "Drei."), (2, ("B",), "Vier.")]


def test_slides_each_their_own_chunks() -> None:
    slides = [Section(n, [f"Folie {n}"], sentences(30)) for n in range(1, 4)]
    chunks = chunk_document(doc(*slides), "d", max_tokens=50, overlap=10)
    assert {c.page for c in chunks} == {1, 2, 3}
    for c in chunks:
        assert c.heading_path == (f"Folie {c.page}",)
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))


def test_empty_sections_and_documents_give_no_chunks() -> None:
    assert chunk_document(doc(), "d") == []
    assert chunk_document(doc(Section(1, ["Leer"], ""), Section(2, ["Leer"], "  \n\n \t")), "d") == []
    chunks = chunk_document(doc(Section(1, ["Leer"], " "), Section(1, ["Voll"], "Inhalt.")), "d")
    assert [(c.heading_path, c.text, c.ordinal) for c in chunks] == [(("Voll",), "Inhalt.", 0)]


def test_size_limit_and_overlap_of_whole_sentences() -> None:
    text = sentences(40)  # 40 sentences of 6 tokens each
    chunks = chunk_document(doc(Section(3, ["H"], text)), "d", max_tokens=30, overlap=12)
    assert len(chunks) > 5
    for c in chunks:
        assert approx_tokens(c.text) <= 30
        assert c.text.startswith("Das ist") and c.text.endswith(".")  # whole sentences only
    for before, after in zip(chunks, chunks[1:]):
        # the next chunk starts with the last two sentences (12 tokens) of the one before
        tail = before.text.split(". ")[-2:]
        assert after.text.startswith(". ".join(tail).rstrip(".")), (before.text, after.text)
    # every sentence is in some chunk, in order
    joined = " ".join(c.text for c in chunks)
    for i in range(40):
        assert f"Nummer {i}." in joined


def test_no_overlap_when_zero() -> None:
    chunks = chunk_document(doc(Section(1, [], sentences(20))), "d", max_tokens=30, overlap=0)
    assert sum(c.text.count("Das ist") for c in chunks) == 20


def test_overlap_never_crosses_sections() -> None:
    chunks = chunk_document(doc(Section(1, ["A"], sentences(10, "Alpha")), Section(1, ["B"], sentences(10, "Beta"))),
                            "d", max_tokens=30, overlap=12)
    for c in chunks:
        assert ("Alpha" in c.text) != ("Beta" in c.text)


def test_a_long_sentence_is_cut_between_words_with_overlap() -> None:
    text = " ".join(f"w{i}" for i in range(500))  # one sentence of one-token words, no punctuation
    chunks = chunk_document(doc(Section(1, [], text)), "d", max_tokens=50, overlap=10)
    assert all(approx_tokens(c.text) <= 50 for c in chunks)
    assert chunks[0].text.split()[0] == "w0" and chunks[-1].text.split()[-1] == "w499"
    for before, after in zip(chunks, chunks[1:]):
        assert after.text.split()[:10] == before.text.split()[-10:]


def test_a_huge_paragraph_without_spaces_is_cut_into_pieces_that_fit() -> None:
    blob = "A1b2C3" * 20_000  # 120,000 characters, no spaces, no punctuation
    chunks = chunk_document(doc(Section(5, ["Anhang"], blob)), "d", max_tokens=100, overlap=20)
    assert "".join(c.text for c in chunks) == blob  # nothing lost or duplicated
    assert all(approx_tokens(c.text) <= 100 for c in chunks)
    assert len(chunks) == 200
    assert {c.page for c in chunks} == {5}


def test_huge_paragraph_with_a_custom_tokenizer() -> None:
    calls = []

    def per_char(text: str) -> int:  # a tokenizer that makes every character a token
        calls.append(len(text))
        return len(text)

    blob = "ä" * 10_000
    chunks = chunk_document(doc(Section(1, [], blob)), "d", max_tokens=256, overlap=0, tokenizer=per_char)
    assert "".join(c.text for c in chunks) == blob
    assert all(len(c.text) <= 256 for c in chunks)
    # besides measuring the whole text once (as a sentence, then as a word), the prefix search only
    # hands the tokenizer text up to twice a piece's size, and not much of it in total
    assert sorted(calls)[-3] <= 2 * 256
    assert sum(sorted(calls)[:-2]) <= 20 * len(blob)  # O(n log piece), not O(n²)


def test_custom_tokenizer_sets_the_limit() -> None:
    text = sentences(20)
    by_words = chunk_document(doc(Section(1, [], text)), "d", max_tokens=24, overlap=0, tokenizer=words)
    assert all(words(c.text) <= 24 for c in by_words)
    assert [c.text.count("Das ist") for c in by_words] == [4] * 5  # 5 words a sentence


TABLE = "| Termin | Raum |\n|---|---|\n" + "\n".join(f"| Woche {i} | H{i} |" for i in range(1, 6))


def test_a_table_that_fits_stays_intact_in_one_chunk() -> None:
    text = sentences(6) + "\n\n" + TABLE + "\n\n" + sentences(6)
    chunks = chunk_document(doc(Section(1, ["Termine"], text)), "d", max_tokens=80, overlap=10)
    assert sum(TABLE in c.text for c in chunks) >= 1
    for c in chunks:
        if "| Woche" in c.text:
            assert TABLE in c.text  # never a fragment


def test_a_table_directly_under_a_line_of_prose_is_still_a_table() -> None:
    text = "Die Räume:\n" + TABLE
    chunks = chunk_document(doc(Section(1, [], text)), "d", max_tokens=60)
    assert chunks[0].text == "Die Räume:\n\n" + TABLE


def test_a_table_too_large_is_cut_between_rows_under_its_header() -> None:
    big = "| Woche | Thema |\n|---|---|\n" + "\n".join(f"| {i} | Thema {i} der Vorlesung |" for i in range(60))
    chunks = chunk_document(doc(Section(2, ["Plan"], big)), "d", max_tokens=80, overlap=10)
    assert len(chunks) > 1
    rows = []
    for c in chunks:
        lines = c.text.split("\n")
        assert lines[:2] == ["| Woche | Thema |", "|---|---|"]
        assert approx_tokens(c.text) <= 80
        rows += lines[2:]
    assert rows == big.split("\n")[2:]  # every row once, in order, none cut


def test_invalid_limits() -> None:
    with pytest.raises(ValueError):
        chunk_document(doc(), "d", max_tokens=0)
    with pytest.raises(ValueError):
        chunk_document(doc(), "d", max_tokens=10, overlap=10)
    with pytest.raises(ValueError):
        chunk_document(doc(), "d", overlap=-1)


def test_sentences_survive_abbreviations() -> None:
    text = "Das gilt z. B. für Klausuren. Dr. Müller prüft. danach folgt nichts."
    chunks = chunk_document(doc(Section(1, [], text)), "d", max_tokens=12, overlap=0)
    assert [c.text for c in chunks] == ["Das gilt z. B. für Klausuren.", "Dr. Müller prüft. danach folgt nichts."]


_ALPHABET = "abcdeäöüßXYZ0123456789 .,!?-\n"
_ALPHABET_WITH_TABLES = _ALPHABET + "|"


@settings(max_examples=150, deadline=None)
@given(texts=st.lists(st.text(_ALPHABET_WITH_TABLES, max_size=600), max_size=4), max_tokens=st.integers(1, 60),
       overlap_share=st.floats(0, 0.9))
def test_every_chunk_fits_whatever_the_text(texts: list[str], max_tokens: int, overlap_share: float) -> None:
    overlap = min(max_tokens - 1, int(max_tokens * overlap_share))
    sections = [Section(i % 2 + 1, [f"H{i}"], t) for i, t in enumerate(texts)]
    chunks = chunk_document(doc(*sections), "d", max_tokens=max_tokens, overlap=overlap)
    for c in chunks:
        assert c.text.strip() and approx_tokens(c.text) <= max_tokens
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))


@settings(max_examples=150, deadline=None)
@given(text=st.text(_ALPHABET, max_size=1500), max_tokens=st.integers(1, 40))
def test_without_overlap_nothing_is_lost_or_repeated(text: str, max_tokens: int) -> None:
    chunks = chunk_document(doc(Section(1, [], text)), "d", max_tokens=max_tokens, overlap=0)
    assert "".join("".join(c.text.split()) for c in chunks) == "".join(text.split())
