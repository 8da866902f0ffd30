"""Recognizer accuracy on the labelled corpus (tests/data/pii_corpus.jsonl), per entity type,
against the targets: recall ≥ 0.99 and precision ≥ 0.98 for the checksum-validated entities
(cards, IBANs, CPR numbers), ≥ 0.95 for emails, phones and IP addresses."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from gateway.policy import RedactionPolicy
from gateway.redaction.recognizers import Finding
from gateway.redaction.redactor import Redactor
from tests.data import pii_corpus

TARGETS = {  # entity: (precision, recall)
    "CREDIT_CARD": (0.98, 0.99), "IBAN": (0.98, 0.99), "DK_CPR": (0.98, 0.99),
    "EMAIL": (0.95, 0.95), "PHONE": (0.95, 0.95), "IP_ADDRESS": (0.95, 0.95),
    "US_SSN": (0.95, 0.95), "SECRET": (0.98, 0.99),
}


def matches(found: Finding, gold: dict[str, object]) -> bool:
    """Same type, and the spans overlap by at least half their union."""
    start, end = int(gold["start"]), int(gold["end"])  # type: ignore[call-overload]
    overlap = min(found.end, end) - max(found.start, start)
    return found.type == gold["type"] and overlap > 0 and \
        overlap / (max(found.end, end) - min(found.start, start)) >= 0.5


def score(records: list[dict[str, object]]) -> dict[str, tuple[float, float, int]]:
    redactor = Redactor(RedactionPolicy(), b"test")
    gold_count, found_count, hits = Counter[str](), Counter[str](), Counter[str]()
    for record in records:
        gold: list[dict[str, object]] = record["entities"]  # type: ignore[assignment]
        unmatched = list(gold)
        for entity in gold:
            gold_count[str(entity["type"])] += 1
        for found in redactor.scan(str(record["text"])):
            found_count[found.type] += 1
            match = next((g for g in unmatched if matches(found, g)), None)
            if match is not None:
                unmatched.remove(match)
                hits[found.type] += 1
    return {entity: (hits[entity] / found_count[entity] if found_count[entity] else 0.0,
                     hits[entity] / gold_count[entity], gold_count[entity])
            for entity in gold_count}


@pytest.fixture(scope="module")
def corpus() -> list[dict[str, object]]:
    return [json.loads(line) for line in pii_corpus.PATH.read_text().splitlines()]


def test_the_corpus_file_is_what_the_seeded_generator_makes() -> None:
    assert pii_corpus.PATH.read_text(encoding="utf-8") == pii_corpus.lines()


def test_the_corpus_covers_every_structured_entity_and_locale(
        corpus: list[dict[str, object]]) -> None:
    types = Counter(str(e["type"]) for r in corpus for e in r["entities"])  # type: ignore[attr-defined]
    assert set(types) == set(TARGETS)
    assert min(types.values()) >= 250
    assert {r["locale"] for r in corpus} == {"en_US", "en_GB", "da_DK", "de_DE"}
    unlabelled = sum(1 for r in corpus if not r["entities"])
    assert unlabelled >= 100  # texts with only look-alikes, or nothing


@pytest.mark.parametrize("entity", sorted(TARGETS))
def test_precision_and_recall_reach_their_targets(corpus: list[dict[str, object]],
                                                  entity: str) -> None:
    precision, recall, count = score(corpus)[entity]
    target_precision, target_recall = TARGETS[entity]
    assert precision >= target_precision, f"{entity}: precision {precision:.3f} on {count}"
    assert recall >= target_recall, f"{entity}: recall {recall:.3f} on {count}"
