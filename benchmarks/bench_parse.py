"""Parse speed of course documents in the sandbox (issue 13: ingest ≥ 20 PDF pages/s on 2 cores, excluding
embedding; this measures the parsing part of it).

A generated 50-page PDF (45 lines of text per page, a table-like block on every fifth page, an outline) is
parsed: in-process (the loader alone), through the sandbox one at a time (loader + process start + limits
+ transfer), and through the sandbox two at a time (both cores).

    python -m benchmarks.bench_parse [--runs 5]

Writes benchmarks/results/parse.{json,md}.
"""

from __future__ import annotations

import argparse
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

from benchmarks.common import machine, write_results
from flexi.rag.loaders import load
from flexi.rag.sandbox import ParseLimits, parse_document
from tests.rag.pdf_maker import make_pdf, with_outline

PAGES = 50


def sample_pdf() -> bytes:
    pages = []
    for i in range(PAGES):
        lines = [f"Kapitel {i // 10 + 1}, Seite {i + 1}: Lineare Regression und Varianzanalyse"]
        lines += [f"{j}. Die Schätzung der Koeffizienten erfolgt nach der Methode der kleinsten Quadrate ({i * j})."
                  for j in range(44)]
        if i % 5 == 0:
            lines += [f"Gruppe {g}    n = {10 + g}    Mittel = {4 + g / 10:.1f}    s = {1 + g / 7:.2f}" for g in range(8)]
        pages.append(lines)
    outline = [(f"Kapitel {c + 1}", c * 10, 1) for c in range(PAGES // 10)]
    return with_outline(make_pdf(pages, title="Statistik II"), outline)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    pdf, limits = sample_pdf(), ParseLimits()

    def timed(fn) -> float:  # type: ignore[no-untyped-def]
        started = time.perf_counter()
        fn()
        return time.perf_counter() - started

    in_process = [timed(lambda: load(pdf, "s.pdf", max_pages=2000, max_unpacked_bytes=1 << 29)) for _ in range(args.runs)]
    sandboxed = [timed(lambda: parse_document(pdf, "s.pdf", limits)) for _ in range(args.runs)]
    with ThreadPoolExecutor(2) as pool:
        started = time.perf_counter()
        list(pool.map(lambda _: parse_document(pdf, "s.pdf", limits), range(2 * args.runs)))
        parallel_wall = time.perf_counter() - started
    rows = {
        "in-process (loader only)": PAGES / statistics.median(in_process),
        "sandbox, one at a time": PAGES / statistics.median(sandboxed),
        "sandbox, two at a time (2 cores)": 2 * args.runs * PAGES / parallel_wall,
    }
    markdown = "# Parse speed (50-page generated PDF)\n\n| how | pages/s |\n|---|---|\n"
    markdown += "".join(f"| {k} | {v:.0f} |\n" for k, v in rows.items())
    markdown += f"\nTarget (whole ingest minus embedding): ≥ 20 pages/s on 2 cores. File: {len(pdf)} bytes.\n"
    print(markdown)
    write_results("parse", {"machine": machine(), "pages": PAGES, "bytes": len(pdf), "pages_per_second": rows,
                            "runs": args.runs}, markdown)


if __name__ == "__main__":
    main()
