"""pareto.svg: well-formed XML with a title and a description in words, one circle per plotted model,
the front told apart from dominated models, and unmeasured quality drawn in its own band."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from flexi.bench import pareto_svg
from flexi.bench.selection import build_selection
from flexi.bench.selection_inputs import Candidate

NS = {"svg": "http://www.w3.org/2000/svg"}


def _svg(candidates: list[Candidate]) -> tuple[ET.Element, dict]:
    doc = build_selection(candidates, users=1, budget=None, budget_label="none")
    return ET.fromstring(pareto_svg.render(doc)), doc


def test_one_circle_per_model_with_title_description_and_the_front_highlighted():
    root, doc = _svg([Candidate("fast <&> model", quality=0.3, tg_tokens_per_s=80.0, memory_bytes=2**30),
                      Candidate("good", quality=0.7, tg_tokens_per_s=20.0, memory_bytes=4 * 2**30),
                      Candidate("worse", quality=0.2, tg_tokens_per_s=10.0, memory_bytes=5 * 2**30)])
    assert doc["pareto"] == ["fast <&> model", "good"]
    assert root.get("role") == "img" and root.get("aria-labelledby") == "pareto-title pareto-desc"
    title, desc = root.find("svg:title", NS), root.find("svg:desc", NS)
    assert title is not None and "quality" in title.text.lower() and "speed" in title.text.lower()
    assert "fast <&> model: quality 0.30, 80.0 generated tokens/s, memory 1024 MiB, on the Pareto front." in desc.text
    assert "worse: quality 0.20, 10.0 generated tokens/s, memory 5120 MiB." in desc.text
    circles = root.findall("svg:circle", NS)
    assert len(circles) == 3
    by_model = {c.find("svg:title", NS).text.split(":")[0]: c for c in circles}
    assert set(by_model) == {"fast <&> model", "good", "worse"}
    assert by_model["good"].get("fill") == by_model["fast <&> model"].get("fill") != by_model["worse"].get("fill")
    assert float(by_model["worse"].get("r")) > float(by_model["good"].get("r")) > float(by_model["fast <&> model"].get("r"))
    # higher quality is drawn higher, faster further right
    assert float(by_model["good"].get("cy")) < float(by_model["worse"].get("cy"))
    assert float(by_model["fast <&> model"].get("cx")) > float(by_model["good"].get("cx"))
    labels = [t.text for t in root.findall("svg:text", NS)]
    assert "fast <&> model" in labels and "good" in labels


def test_quality_not_measured_is_drawn_in_its_own_band_and_unplottable_models_are_named():
    root, _ = _svg([Candidate("bench-only", tg_tokens_per_s=50.0, memory_bytes=900 * 2**20),
                    Candidate("safety-only", safety=0.8)])
    circles = root.findall("svg:circle", NS)
    assert len(circles) == 1
    assert float(circles[0].get("cy")) > 400  # below the plot area (y = 400 is quality 0)
    texts = " ".join(t.text or "" for t in root.findall("svg:text", NS))
    assert "not" in texts and "measured" in texts and "safety-only" in texts
    desc = root.find("svg:desc", NS).text
    assert "bench-only: quality not measured, 50.0 generated tokens/s, memory 900 MiB, on the Pareto front." in desc
    assert "safety-only: quality not measured, speed not measured, memory unknown, on the Pareto front." in desc
