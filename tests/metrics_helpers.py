"""Reading Prometheus' text exposition in tests: parsed by prometheus-client, never by regular expressions."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


def parse(text: str) -> list[tuple[str, dict[str, str], float]]:
    """Every sample as (name, labels, value)."""
    return [(s.name, dict(s.labels), s.value) for family in text_string_to_metric_families(text)
            for s in family.samples]


def total(samples: list[tuple[str, dict[str, str], float]], name: str, **labels: str) -> float:
    """The sum of the samples called `name` whose labels include `labels` (0 when there are none)."""
    return sum(value for n, have, value in samples
               if n == name and all(have.get(k) == v for k, v in labels.items()))


def label_values(samples: list[tuple[str, dict[str, str], float]], name: str, label: str) -> set[str]:
    return {have[label] for n, have, _ in samples if n == name and label in have}
