"""Redaction: accuracy and speed, side by side with Microsoft Presidio in one run.

- accuracy: precision, recall and F1 per entity on tests/data/pii_corpus.jsonl (the labelled,
  seeded corpus the tests use), for Vagt's recognizers and for Presidio's pattern recognizers
  (presidio-analyzer: Email, Phone (same regions as Vagt), CreditCard, Iban, UsSsn, Ip; no NLP
  engine, as "its pattern recognizers"), matched the same way (same type, spans overlapping by
  at least half their union). Presidio has no DK_CPR or secret recognizers.
- speed: the whole corpus scanned by each; and the added latency for a 4 KiB prompt (prose with
  a few entities): Vagt's redact stage on a chat request vs Presidio's analyze + anonymize.
  Targets: ≥ Presidio's F1 on every structured entity, at least 10 times its speed, ≤ 0.5 ms median.

Usage: PYTHONPATH=. python bench/redaction.py   (needs presidio-analyzer, presidio-anonymizer)
"""

from __future__ import annotations

import json
import logging
import random
import statistics
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from micro import RESULTS
from presidio_analyzer import EntityRecognizer, RecognizerResult
from presidio_analyzer.predefined_recognizers import (
    CreditCardRecognizer,
    EmailRecognizer,
    IbanRecognizer,
    IpRecognizer,
    PhoneRecognizer,
    UsSsnRecognizer,
)
from presidio_anonymizer import AnonymizerEngine
from presidio_anonymizer.entities import OperatorConfig

from gateway.policy import RedactionPolicy
from gateway.redaction.redactor import Redactor
from inference.types import ChatRequest, Message, Sampling
from tests.data import pii_corpus

PRESIDIO_TYPES = {"EMAIL_ADDRESS": "EMAIL", "PHONE_NUMBER": "PHONE", "CREDIT_CARD": "CREDIT_CARD",
                  "IBAN_CODE": "IBAN", "US_SSN": "US_SSN", "IP_ADDRESS": "IP_ADDRESS"}
REGIONS = ("US", "GB", "DK", "DE")
Span = tuple[str, int, int]


class Presidio:
    def __init__(self) -> None:
        self.recognizers = [EmailRecognizer(), PhoneRecognizer(supported_regions=REGIONS),
                            CreditCardRecognizer(), IbanRecognizer(), UsSsnRecognizer(),
                            IpRecognizer()]
        self.anonymizer = AnonymizerEngine()

    def analyze(self, text: str) -> list[RecognizerResult]:
        results: list[RecognizerResult] = []
        for recognizer in self.recognizers:
            results += recognizer.analyze(text, recognizer.supported_entities, None)
        return EntityRecognizer.remove_duplicates(results)  # as AnalyzerEngine does

    def spans(self, text: str) -> list[Span]:
        return [(PRESIDIO_TYPES[r.entity_type], r.start, r.end) for r in self.analyze(text)]

    def redact(self, text: str) -> str:
        return self.anonymizer.anonymize(text, self.analyze(text), operators={  # type: ignore[arg-type]
            "DEFAULT": OperatorConfig("replace")}).text


def overlap(found: Span, gold: dict[str, Any]) -> bool:
    inter = min(found[2], gold["end"]) - max(found[1], gold["start"])
    union = max(found[2], gold["end"]) - min(found[1], gold["start"])
    return found[0] == gold["type"] and inter > 0 and inter / union >= 0.5


def accuracy(records: list[dict[str, Any]], spans: Callable[[str], list[Span]]
             ) -> dict[str, dict[str, float]]:
    gold_n, found_n, hits = Counter[str](), Counter[str](), Counter[str]()
    for record in records:
        unmatched = list(record["entities"])
        for entity in unmatched:
            gold_n[entity["type"]] += 1
        for found in spans(record["text"]):
            found_n[found[0]] += 1
            match = next((g for g in unmatched if overlap(found, g)), None)
            if match is not None:
                unmatched.remove(match)
                hits[found[0]] += 1
    table = {}
    for entity in sorted(gold_n):
        precision = hits[entity] / found_n[entity] if found_n[entity] else 0.0
        recall = hits[entity] / gold_n[entity]
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        table[entity] = {"precision": precision, "recall": recall, "f1": f1}
    return table


PROSE = ("The quarterly report shows steady growth in all regions, and the team expects the new "
         "onboarding flow to reduce support tickets considerably over the coming months. ")
ENTITIES = ["alice.jensen@example.com", "+45 32 12 34 56", "4111 1111 1111 1111",
            "DK50 0040 0440 1162 43", "203.0.113.42", "536-90-4399"]


def prompts(count: int) -> list[str]:
    """4 KiB prompts of prose with, on average, five entities each."""
    rng, out = random.Random(11), []
    for _ in range(count):
        parts: list[str] = []
        while sum(map(len, parts)) < 4096:
            parts.append(PROSE if rng.random() < 0.85 else f"Contact {rng.choice(ENTITIES)} now. ")
        out.append("".join(parts)[:4096])
    return out


def median_ms(work: Callable[[str], object], texts: list[str]) -> float:
    samples = []
    for text in texts:
        started = time.perf_counter_ns()
        work(text)
        samples.append((time.perf_counter_ns() - started) / 1e6)
    return statistics.median(samples)


def main() -> None:
    logging.getLogger("presidio-analyzer").setLevel(logging.ERROR)
    records = [json.loads(line) for line in pii_corpus.PATH.read_text().splitlines()]
    texts = [r["text"] for r in records]
    vagt = Redactor(RedactionPolicy.model_validate(
        {"default": {"request": {"*": "mask"}}}), b"bench")
    presidio = Presidio()
    presidio.spans("warm up tldextract: a@example.com")

    def vagt_spans(text: str) -> list[Span]:
        return [(f.type, f.start, f.end) for f in vagt.scan(text)]

    def vagt_redact(text: str) -> object:
        return vagt.session(frozenset()).request(ChatRequest(
            model="m", sampling=Sampling(), messages=(Message(role="user", content=text),)))

    ours, theirs = accuracy(records, vagt_spans), accuracy(records, presidio.spans)
    timings = {}
    for name, spans in (("vagt", vagt_spans), ("presidio", presidio.spans)):
        started = time.perf_counter()
        for text in texts:
            spans(text)
        timings[name] = time.perf_counter() - started
    big = prompts(200)
    latency = {"vagt": median_ms(vagt_redact, big), "presidio": median_ms(presidio.redact, big)}

    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "redaction.json").write_text(json.dumps({
        "accuracy": {"vagt": ours, "presidio": theirs}, "corpus_seconds": timings,
        "prompt_4k_median_ms": latency}, indent=2))
    print("| entity | Vagt P / R / F1 | Presidio P / R / F1 |\n|---|---|---|")
    for entity in ours:
        o, t = ours[entity], theirs.get(entity)
        other = "no recognizer" if t is None or (t["f1"] == 0 and t["recall"] == 0) else \
            f"{t['precision']:.3f} / {t['recall']:.3f} / {t['f1']:.3f}"
        print(f"| {entity} | {o['precision']:.3f} / {o['recall']:.3f} / {o['f1']:.3f} | "
              f"{other} |")
    count = len(texts)
    print(f"\ncorpus ({count} texts): Vagt {timings['vagt'] * 1e6 / count:.0f} µs/text, "
          f"Presidio {timings['presidio'] * 1e6 / count:.0f} µs/text, "
          f"ratio {timings['presidio'] / timings['vagt']:.1f}x")
    print(f"4 KiB prompt, median: Vagt {latency['vagt']:.3f} ms (redact stage), "
          f"Presidio {latency['presidio']:.3f} ms (analyze + anonymize), "
          f"ratio {latency['presidio'] / latency['vagt']:.1f}x")


if __name__ == "__main__":
    main()
