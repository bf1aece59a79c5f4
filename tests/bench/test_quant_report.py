"""The quantization report's recommendation rule and its rendering (pure functions of the document)."""

from __future__ import annotations

from flexi.bench.quant_report import markdown, recommend, table

MIB = 2**20


def row(model: str, quant: str, size_mib: float, de: float | None, en: float | None, tg: float | None = 100.0):
    return {"model": model, "quant": quant, "size_bytes": int(size_mib * MIB), "bits_per_weight": size_mib / 16,
            "perplexity": {"de": de, "en": en}, "pp_tokens_per_s": 900.0, "tg_tokens_per_s": tg, "errors": [],
            "tensor_types": {"Q5_0": 166, "F32": 61} if quant == "Q4_K_M" else None}


# The talk's table, English column, with a German column 20 % higher.
TALK = [row("m:q2_k", "Q2_K", 2670, 8.12, 6.77), row("m:q3_k_m", "Q3_K_M", 3060, 7.38, 6.15),
        row("m:q4_k_m", "Q4_K_M", 3800, 7.15, 5.96), row("m:q5_k_m", "Q5_K_M", 4450, 7.10, 5.92),
        row("m:q6_k", "Q6_K", 5150, 7.09, 5.91), row("m:f16", "F16", 13000, 7.09, 5.91)]


def test_smallest_within_tolerance_of_the_best_in_both_languages():
    assert recommend(TALK, 3.0)["model"] == "m:q4_k_m"  # Q3_K_M is 4 % worse in English
    assert recommend(TALK, 5.0)["model"] == "m:q3_k_m"
    assert recommend(TALK, 0.5)["model"] == "m:q5_k_m"
    assert recommend(TALK, 0.0)["model"] == "m:q6_k"  # equal to F16 and smaller
    rec = recommend(TALK, 3.0)
    assert rec["best_perplexity"] == {"de": 7.09, "en": 5.91} and rec["tolerance_percent"] == 3.0
    assert "Q4_K_M" in rec["reason"]["en"] and "3 %" in rec["reason"]["en"]
    assert rec["reason"]["de"].startswith("Empfohlen: m:q4_k_m") and "m:q2_k" in rec["reason"]["de"]


def test_a_language_can_veto():
    rows = [row("a", "Q4_0", 80, 30.0, 10.0), row("b", "Q8_0", 140, 20.0, 10.1)]
    assert recommend(rows, 3.0)["model"] == "b"  # a is as good in English but 50 % worse in German


def test_models_without_all_figures_are_not_recommended():
    assert recommend([row("a", "Q4_0", 80, None, 10.0)]) is None
    assert recommend([]) is None
    rows = [row("a", "Q4_0", 80, None, 10.0), row("b", "Q8_0", 140, 20.0, 10.5)]
    assert recommend(rows)["model"] == "b"
    no_size = row("c", "Q2_K", 70, 20.0, 10.0)
    no_size["size_bytes"] = None
    assert recommend([no_size, rows[1]])["model"] == "b"


def test_ties_in_size_go_to_the_lower_perplexity():
    rows = [row("a", "Q4_0", 80, 20.2, 10.2), row("b", "Q4_0", 80, 20.0, 10.0)]
    assert recommend(rows)["model"] == "b"


def doc(results):
    return {"tool": "flexi quant-report", "started_at": "s", "finished_at": "f",
            "target": {"url": "http://127.0.0.1:1", "local": True}, "versions": {"llama_cpp_python": "0.3"},
            "machine": {"cpu_model": "cpu", "cpu_cores": 2, "ram_gib": 8},
            "parameters": {"texts": {"de": "de", "en": "en"}, "ctx": 512, "prompt_tokens": 128, "output_tokens": 32,
                           "repeat": 2},
            "results": results, "recommendation": recommend(results)}


def test_table_has_the_talks_layout_one_column_per_quantization():
    headers, rows = table(doc(TALK[:2]), "en")
    assert headers == ["Measure", "Q2_K", "Q3_K_M"]
    by_name = {r[0]: r[1:] for r in rows}
    assert by_name["Perplexity (English text)"] == ["6.77", "6.15"]
    assert by_name["File size (MiB)"] == ["2670.0", "3060.0"]
    assert by_name["ms/token (generation)"] == ["10.0", "10.0"]
    headers_de, rows_de = table(doc(TALK[:2]), "de")
    assert headers_de[0] == "Messgröße" and rows_de[1][0] == "Perplexität (deutscher Text)"


def test_markdown_shows_the_table_the_recommendation_in_both_languages_the_tensor_mix_and_errors():
    results = [dict(r) for r in TALK[:3]]
    results[0] = {**results[0], "tg_tokens_per_s": None, "errors": ["speed: timeout"]}
    md = markdown(doc(results), notes=["Source: Q4_1."])
    assert "| Measure | Q2_K | Q3_K_M | Q4_K_M |" in md
    assert "| Perplexity (German text) | 8.12 | 7.38 | 7.15 |" in md
    assert "Recommended: m:q4_k_m" in md and "Empfohlen: m:q4_k_m" in md
    assert "- Q4_K_M: Q5_0 × 166, F32 × 61" in md
    assert "- m:q2_k: speed: timeout" in md and "## Notes\n\nSource: Q4_1." in md
    assert "| ms/token (generation) | – |" in md


def test_when_no_model_is_good_in_both_languages_the_most_balanced_is_named():
    rows = [row("a", "Q4_0", 80, 10.0, 20.0), row("b", "Q8_0", 140, 20.0, 10.0), row("c", "F16", 270, 11.0, 11.0)]
    rec = recommend(rows, 3.0)
    assert rec["model"] == "c" and "No quantization is within 3 %" in rec["reason"]["en"]
    assert "Keine Quantisierung" in rec["reason"]["de"]
    assert recommend(rows[:2], -5.0)["model"] == "a"  # a negative tolerance counts as 0; equal excess → smaller
