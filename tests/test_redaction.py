"""Recognizers on hand-written text, the modes and how roles combine, and the response filter
on streams cut at every possible point."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from gateway.policy import RedactionPolicy
from gateway.redaction.recognizers import Finding
from gateway.redaction.redactor import Blocked, Redactor, dry_run
from gateway.redaction.stream import ResponseFilter
from inference.types import ChatRequest, CompletionRequest, EmbedRequest, Message, Sampling

ALL = RedactionPolicy()


def found(text: str) -> list[tuple[str, str]]:
    return [(f.type, text[f.start:f.end]) for f in Redactor(ALL, b"k").scan(text)]


@pytest.mark.parametrize(("text", "expected"), [
    ("Write to jane.doe+bills@example.co.uk today", [("EMAIL", "jane.doe+bills@example.co.uk")]),
    ("Ring til mig på tlf. 32 12 34 56", [("PHONE", "32 12 34 56")]),
    ("Call +1 (212) 555-0123 or 0049 30 123456", [("PHONE", "+1 (212) 555-0123"),
                                                 ("PHONE", "0049 30 123456")]),
    ("Visa 4111-1111-1111-1111, Amex 3782 822463 10005",
     [("CREDIT_CARD", "4111-1111-1111-1111"), ("CREDIT_CARD", "3782 822463 10005")]),
    ("Betal til DK50 0040 0440 1162 43.", [("IBAN", "DK50 0040 0440 1162 43")]),
    ("IBAN GB82WEST12345698765432", [("IBAN", "GB82WEST12345698765432")]),
    ("SSN: 536-90-4399", [("US_SSN", "536-90-4399")]),
    ("Mit CPR-nr. er 211062-5629", [("DK_CPR", "211062-5629")]),
    ("cpr 2110625629", [("DK_CPR", "2110625629")]),
    ("from 203.0.113.42 and 2001:db8::8a2e:370:7334", [("IP_ADDRESS", "203.0.113.42"),
                                                       ("IP_ADDRESS", "2001:db8::8a2e:370:7334")]),
    ("aws AKIAIOSFODNN7EXAMPLE", [("SECRET", "AKIAIOSFODNN7EXAMPLE")]),
])
def test_recognizers_find_real_looking_entities(text: str,
                                                expected: list[tuple[str, str]]) -> None:
    assert found(text) == expected


@pytest.mark.parametrize("text", [
    "Card 4111 1111 1111 1112 fails Luhn",
    "IBAN DK51 0040 0440 1162 43 fails mod-97",
    "ISBN 978-3-16-148410-0",
    "Released on 2024-01-15, v1.2.3, build 10.0.19041.1",
    "SSN 000-12-3456 and 666-12-3456 and 912-12-3456 are never issued",
    "CPR 320189-1234 has no such day",
    "Order #48213977 shipped",
    "ordre nr. 0102031234",
    "at 12:30:45 from 300.1.2.3",
    "total 156 993,21 kr.",
    "a bearer of bad news",
])
def test_look_alikes_are_left_alone(text: str) -> None:
    assert found(text) == []


def test_secrets_carry_their_subtype() -> None:
    jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLWJ5dGVz"
    pem = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEI\n-----END EC PRIVATE KEY-----"
    text = f"id {jwt}; Authorization: Bearer s3cr3tTokenValue123456; {pem}; vagt_{'x' * 43}"
    subtypes = [f.subtype for f in Redactor(ALL, b"k").scan(text)]
    assert subtypes == ["jwt", "bearer_token", "private_key", "vagt_api_key"]


def test_context_words_move_the_score() -> None:
    redactor = Redactor(ALL, b"k")
    bare = redactor.scan("ref 536904399")  # nine bare digits: not enough on their own
    assert bare == []
    assert [f.type for f in redactor.scan("SSN 536904399")] == ["US_SSN"]
    strict = Redactor(RedactionPolicy(thresholds={"US_SSN": 0.9}), b"k")
    assert strict.scan("SSN 536-90-4399") != []  # dashed and named: 1.0
    assert strict.scan("536-90-4399") == []  # dashed alone: 0.85, below 0.9


POLICY = RedactionPolicy.model_validate({
    "default": {"request": {"SECRET": "block", "EMAIL": "pseudonymize", "*": "mask"},
                "response": {"CREDIT_CARD": "mask", "SECRET": "block"}},
    "roles": {"support": {"request": {"*": "off"}},
              "finance": {"request": {"IBAN": "hash", "*": "block"}},
              "auditors": {"request": {"IBAN": "mask"}}},
})


def test_modes_mask_hash_pseudonymize_and_number_the_same_value_once() -> None:
    redactor = Redactor(POLICY, b"tenant-key")
    text = "alice@example.com wrote to bob@example.com, then alice@example.com; 32 12 34 56"
    redacted, _, blocked = dry_run(redactor, "tlf " + text)
    assert redacted == ("tlf <EMAIL_1> wrote to <EMAIL_2>, then <EMAIL_1>; <PHONE_1>")
    assert blocked == []
    hashed, _, _ = dry_run(redactor, "DK50 0040 0440 1162 43", frozenset({"finance"}))
    again, _, _ = dry_run(Redactor(POLICY, b"tenant-key"), "DK50 0040 0440 1162 43",
                          frozenset({"finance"}))
    other, _, _ = dry_run(Redactor(POLICY, b"other-key"), "DK50 0040 0440 1162 43",
                          frozenset({"finance"}))
    assert hashed.startswith("<IBAN_")
    assert len(hashed) == len("<IBAN_>") + 10
    assert hashed == again != other  # stable for one key, different for another


def test_roles_grant_the_most_permissive_mode_over_the_default() -> None:
    redactor = Redactor(POLICY, b"k")
    assert redactor.plan(frozenset()).request["IBAN"] == "mask"
    assert redactor.plan(frozenset({"finance"})).request["IBAN"] == "hash"
    assert redactor.plan(frozenset({"finance"})).request["EMAIL"] == "block"
    assert redactor.plan(frozenset({"finance", "support"})).request["EMAIL"] == "off"
    assert redactor.plan(frozenset({"finance", "auditors"})).request["IBAN"] == "hash"
    assert redactor.plan(frozenset({"auditors"})).request["EMAIL"] == "pseudonymize"


def test_block_names_the_types_never_the_values() -> None:
    session = Redactor(POLICY, b"k").session(frozenset())
    request = ChatRequest(model="m", messages=(
        Message(role="system", content="key AKIAIOSFODNN7EXAMPLE"),
        Message(role="user", content="mail alice@example.com")), sampling=Sampling())
    with pytest.raises(Blocked) as refused:
        session.request(request)
    assert refused.value.status == 403
    assert refused.value.types == ("SECRET",)
    assert "AKIA" not in refused.value.message
    assert session.findings() == {"request": {"EMAIL": 1, "SECRET": 1}}


def test_every_text_of_every_request_kind_is_redacted() -> None:
    session = Redactor(POLICY, b"k").session(frozenset())
    chat = session.request(ChatRequest(model="m", sampling=Sampling(), messages=(
        Message(role="system", content="from 203.0.113.42"),
        Message(role="assistant", content="mail alice@example.com"),
        Message(role="user", content="card 4111 1111 1111 1111"))))
    assert [m.content for m in chat.messages] == [
        "from <IP_ADDRESS_1>", "mail <EMAIL_1>", "card <CREDIT_CARD_1>"]
    completion = session.request(CompletionRequest(
        model="m", prompt="mail bob@example.com", suffix=" and 203.0.113.42",
        sampling=Sampling()))
    assert (completion.prompt, completion.suffix) == ("mail <EMAIL_2>", " and <IP_ADDRESS_1>")
    embed = session.request(EmbedRequest(model="m", inputs=("x alice@example.com", "y")))
    assert embed.inputs == ("x <EMAIL_1>", "y")
    assert session.pseudonyms == {"<EMAIL_1>": "alice@example.com",
                                  "<EMAIL_2>": "bob@example.com"}


# --- streaming -----------------------------------------------------------------------------------

STREAM_POLICY = RedactionPolicy.model_validate({"default": {
    "request": {"*": "pseudonymize"}, "response": {"*": "mask", "SECRET": "hash"}}})
RESPONSES = [
    "Sure: <EMAIL_1> is on file; call +45 32 12 34 56 or card 4111 1111 1111 1111.",
    "Wire to DK50 0040 0440 1162 43<IBAN_1>, key eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjMifQ."
    "abcdefghijkl done",
    "<EMAIL_1><EMAIL_1> and 203.0.113.42:8080, cpr 211062-5629.",
    "plain words only, nothing to see here at all.",
    "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg\nkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY----- ok",
]


def stream(text: str, cuts: list[int]) -> str:
    session = Redactor(STREAM_POLICY, b"k").session(frozenset())
    session.request(EmbedRequest(model="m", inputs=("alice@example.com",)))  # <EMAIL_1>
    response = ResponseFilter(session)
    out, last = [], 0
    for cut in [*cuts, len(text)]:
        out.append(response.feed(text[last:cut]))
        last = cut
    out.append(response.finish())
    return "".join(out)


@pytest.mark.parametrize("text", RESPONSES)
def test_a_stream_cut_anywhere_comes_out_as_the_whole_response(text: str) -> None:
    whole = stream(text, [])
    for cut in range(1, len(text)):
        assert stream(text, [cut]) == whole, f"cut at {cut}"
    rng = random.Random(7)
    for _ in range(100):  # token-sized pieces
        cuts = sorted(rng.sample(range(1, len(text)), k=min(len(text) - 1, len(text) // 4)))
        assert stream(text, cuts) == whole


def test_entities_and_placeholders_split_across_chunks_never_leak() -> None:
    text = RESPONSES[0]
    assert stream(text, []) == ("Sure: alice@example.com is on file; call <PHONE_1> or card "
                                "<CREDIT_CARD_1>.")
    for cut in range(1, len(text)):
        session = Redactor(STREAM_POLICY, b"k").session(frozenset())
        response = ResponseFilter(session)
        first = response.feed(text[:cut])
        assert "4111" not in first
        assert "32 12" not in first.replace("<PHONE_1>", "")
        assert first in text[:cut] or "<" in first  # only what is settled goes out


def test_the_hold_back_is_bounded_and_plain_text_flows() -> None:
    session = Redactor(STREAM_POLICY, b"k").session(frozenset())
    response = ResponseFilter(session)
    assert response.feed("Hello there, how ") == "Hello there, how "  # whole words flow
    assert response.feed("are you") == "are "  # the unfinished word waits
    digits = " 1 2 3 4 5 6 7 8 9 0" * 8
    sent = response.feed(digits)
    assert sent
    assert len("you" + digits) - len(sent) <= 64
    assert response.finish() == ("you" + digits)[len(sent):]


def test_a_blocked_entity_in_a_response_stops_it() -> None:
    policy = RedactionPolicy.model_validate(
        {"default": {"response": {"CREDIT_CARD": "block"}}})
    response = ResponseFilter(Redactor(policy, b"k").session(frozenset()))
    assert response.feed("Your number is ") == "Your number is "
    assert response.feed("4111 1111 1111 1111, keep it safe.") == ""  # held: digits
    with pytest.raises(Blocked) as refused:
        response.finish()
    assert refused.value.types == ("CREDIT_CARD",)


def test_findings_serialise_in_the_stable_form() -> None:
    finding = Finding("SECRET", 3, 23, 1.0, "aws_access_key")
    assert finding.as_dict() == {"type": "SECRET", "start": 3, "end": 23, "score": 1.0,
                                 "subtype": "aws_access_key"}
    assert Finding("EMAIL", 0, 5, 0.951).as_dict() == {"type": "EMAIL", "start": 0, "end": 5,
                                                        "score": 0.95}


def test_names_places_and_organisations_come_from_a_spacy_pipeline(tmp_path: Path) -> None:
    """A real spaCy pipeline (a rule-based entity ruler built here: this machine cannot
    download a statistical model), loaded by directory as a policy names it."""
    import spacy

    nlp = spacy.blank("en")
    nlp.add_pipe("entity_ruler").add_patterns([  # type: ignore[attr-defined]
        {"label": "PERSON", "pattern": [{"LOWER": "anne"}, {"LOWER": "jensen"}]},
        {"label": "GPE", "pattern": "Copenhagen"}, {"label": "ORG", "pattern": "Novo Nordisk"}])
    nlp.to_disk(tmp_path / "ner")
    policy = RedactionPolicy.model_validate({
        "default": {"request": {"*": "mask", "LOCATION": "off"}},
        "ner": {"model": str(tmp_path / "ner")}})
    text = "Anne Jensen of Novo Nordisk (anne@example.com) lives in Copenhagen."
    redacted, found, _ = dry_run(Redactor(policy, b"k"), text)
    assert redacted == "<PERSON_1> of <ORGANIZATION_1> (<EMAIL_1>) lives in Copenhagen."
    assert [f.type for f in found] == ["PERSON", "ORGANIZATION", "EMAIL", "LOCATION"]
    assert Redactor(ALL, b"k").scan(text) == [found[2]]  # off unless the policy asks


def test_a_policy_naming_a_missing_pipeline_is_refused_where_it_says_so(
        tmp_path: Path) -> None:
    from gateway.policy_source import PolicyError, parse_policy

    text = "version: 1\nredaction:\n  ner:\n    model: no_such_pipeline\n"
    with pytest.raises(PolicyError) as refused:
        parse_policy(text, "p.yaml")
    [problem] = refused.value.problems
    assert (problem.line, problem.column) == (4, 12)
    assert "no spaCy pipeline 'no_such_pipeline'" in problem.message


SECRETS_ONLY = RedactionPolicy.model_validate({"default": {"response": {"SECRET": "mask"}}})
SECRET_RESPONSES = [
    "Use id:AKIAIOSFODNN7EXAMPLE then Bearer abc123def456ghi789jkl0 and stop.",
    "Token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjMifQ.abcdefghijkl, vagt_" + "k" * 43 + " end",
    "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEI\n-----END EC PRIVATE KEY----- Ask Bob at 555.",
]


@pytest.mark.parametrize("text", SECRET_RESPONSES)
def test_a_plan_for_secrets_only_holds_back_only_what_may_become_a_secret(text: str) -> None:
    def run(cuts: list[int]) -> str:
        response = ResponseFilter(Redactor(SECRETS_ONLY, b"k").session(frozenset()))
        out, last = [], 0
        for cut in [*cuts, len(text)]:
            out.append(response.feed(text[last:cut]))
            last = cut
        return "".join(out) + response.finish()

    whole = run([])
    assert "AKIA" not in whole
    assert "eyJ" not in whole
    assert "MHcC" not in whole
    for cut in range(1, len(text)):
        assert run([cut]) == whole, f"cut at {cut}"


def test_plain_words_flow_at_once_when_only_secrets_are_masked() -> None:
    response = ResponseFilter(Redactor(SECRETS_ONLY, b"k").session(frozenset()))
    assert response.feed("Hello") == "Hello"  # cannot grow into a secret
    assert response.feed(" the") == " the"
    assert response.feed(" e") == " "  # "e" may become "eyJ…"
    assert response.feed("asy 42") == "easy 42"  # digits are nothing to this plan
    assert response.feed(" id:AKI") == " "  # "id:AKI" may become an AWS key id
