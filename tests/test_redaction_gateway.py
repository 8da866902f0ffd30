"""Redaction in a live gateway, through the official clients: what the model sees, what comes
back (streamed or not), what is refused, what the audit log keeps; the dry runs."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import MODEL, ROOT, VAGT, Server, write_catalogue

POLICY = """version: 1
roles:
  admin: {members: {api_key_roles: [admin]}}
  user: {members: {api_key_roles: [user]}}
  finance: {members: {api_key_roles: [finance]}}
rules:
  - roles: [admin]
    allow: [chat, complete, embed, models:list, policy:read, audit:read]
  - roles: [user, finance]
    allow: [chat, complete, embed, models:list]
audit:
  bodies: redacted
redaction:
  default:
    request: {SECRET: block, "*": mask}
    response: {CREDIT_CARD: mask, SECRET: block}
  roles:
    finance:
      request: {EMAIL: pseudonymize, IBAN: pseudonymize}
"""
EMAIL = "alice.jensen@example.com"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, model_path: Path) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("redaction")
    write_catalogue(root / "data", model_path)
    policy = root / "policy.yaml"
    policy.write_text(POLICY)
    server = Server(root / "data", "--workers", "1", "--threads", "1", policy=policy,
                    env={"VAGT_METRICS": "true"})
    yield server
    server.stop()


@pytest.fixture(scope="module")
def keys(gateway: Server) -> dict[str, str]:
    return {role: gateway.create_key(role, role) for role in ("user", "finance")}


def client(gateway: Server, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0)


def forced(value: str) -> dict[str, Any]:
    """A response format that makes the model answer {"value": VALUE}, exactly (the grammar
    allows nothing else), so what comes back is known whatever the model would say."""
    return {"type": "json_schema", "json_schema": {"name": "answer", "schema": {
        "type": "object", "properties": {"value": {"const": value}}, "required": ["value"]}}}


def test_the_model_sees_placeholders_and_the_log_keeps_no_value(
        gateway: Server, keys: dict[str, str]) -> None:
    raw = client(gateway, keys["user"]).chat.completions.with_raw_response.create(
        model=MODEL, max_tokens=4, messages=[
            {"role": "system", "content": "Card on file: 4111 1111 1111 1111."},
            {"role": "user", "content": f"Mail {EMAIL} and {EMAIL}, tlf +45 32 12 34 56."}])
    assert raw.http_response.status_code == 200
    record = gateway.audit_record(raw.headers["x-request-id"])
    assert record["pii"] == {"request": {"CREDIT_CARD": 1, "EMAIL": 2, "PHONE": 1}}
    sent = record["body"]["request"]  # exactly the messages the model was given
    assert sent == [
        {"role": "system", "content": "Card on file: <CREDIT_CARD_1>."},
        {"role": "user", "content": "Mail <EMAIL_1> and <EMAIL_1>, tlf <PHONE_1>."}]
    assert "response" in record["body"]
    stored = json.dumps(record)
    assert EMAIL not in stored
    assert "4111 1111 1111 1111" not in stored  # (a hash may hold "4111")
    assert "32 12 34 56" not in stored


def test_a_secret_in_a_request_is_refused_naming_its_type(
        gateway: Server, keys: dict[str, str]) -> None:
    with pytest.raises(openai.PermissionDeniedError) as refused:
        client(gateway, keys["user"]).chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "key AKIAIOSFODNN7EXAMPLE"}])
    error = refused.value.body
    assert isinstance(error, dict)
    assert error["code"] == "pii_blocked"
    assert "SECRET" in error["message"]
    assert "AKIA" not in error["message"]
    record = gateway.audit_record(refused.value.response.headers["x-request-id"])
    assert (record["decision"], record["status"], record["error"]) == (
        "denied", 403, "pii_blocked")
    assert record["pii"] == {"request": {"SECRET": 1}}
    assert "AKIA" not in json.dumps(record)


def test_pseudonyms_come_back_as_the_originals(gateway: Server, keys: dict[str, str]) -> None:
    finance = client(gateway, keys["finance"])
    messages = [{"role": "user", "content": f"My address is {EMAIL}. Repeat it."}]
    answer = finance.chat.completions.create(model=MODEL, messages=messages,  # type: ignore[arg-type]
                                             response_format=forced("<EMAIL_1>"))  # type: ignore[arg-type]
    assert json.loads(answer.choices[0].message.content or "") == {"value": EMAIL}
    streamed = "".join(chunk.choices[0].delta.content or "" for chunk in
                       finance.chat.completions.create(
                           model=MODEL, messages=messages, stream=True,  # type: ignore[arg-type]
                           response_format=forced("<EMAIL_1>")) if chunk.choices)  # type: ignore[arg-type]
    assert json.loads(streamed) == {"value": EMAIL}
    # a user's email is masked, not pseudonymized: the placeholder stays
    masked = client(gateway, keys["user"]).chat.completions.create(
        model=MODEL, messages=messages, response_format=forced("<EMAIL_1>"))  # type: ignore[arg-type]
    assert json.loads(masked.choices[0].message.content or "") == {"value": "<EMAIL_1>"}


def test_ollama_streams_restore_and_mask_too(gateway: Server, keys: dict[str, str]) -> None:
    schema = {"type": "object", "properties": {"value": {"const": "<EMAIL_1> 4111 1111 1111 1111"}},
              "required": ["value"]}
    with httpx.stream("POST", f"{gateway.url}/api/chat", timeout=60,
                      headers={"Authorization": f"Bearer {keys['finance']}"}, json={
                          "model": MODEL, "format": schema, "messages": [
                              {"role": "user", "content": f"I am {EMAIL}"}]}) as response:
        lines = [json.loads(line) for line in response.iter_lines() if line]
    text = "".join(line["message"]["content"] for line in lines)
    assert json.loads(text) == {"value": f"{EMAIL} <CREDIT_CARD_1>"}
    assert lines[-1]["done"] is True


def test_a_blocked_entity_in_a_response_is_withheld(gateway: Server,
                                                    keys: dict[str, str]) -> None:
    user = client(gateway, keys["user"])
    with pytest.raises(openai.PermissionDeniedError) as refused:
        user.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}],
                                     response_format=forced("AKIAIOSFODNN7EXAMPLE"))  # type: ignore[arg-type]
    assert refused.value.code == "pii_blocked"
    with httpx.stream("POST", f"{gateway.url}/v1/chat/completions", timeout=60,
                      headers={"Authorization": f"Bearer {keys['user']}"}, json={
                          "model": MODEL, "stream": True, "response_format": forced(
                              "AKIAIOSFODNN7EXAMPLE"),
                          "messages": [{"role": "user", "content": "hi"}]}) as response:
        body = response.read().decode()
    assert "AKIA" not in body
    assert '"code":"pii_blocked"' in body
    record = gateway.audit_record(response.headers["x-request-id"])
    assert (record["status"], record["error"]) == (403, "pii_blocked")
    assert record["pii"]["response"] == {"SECRET": 1}


def test_embedding_inputs_are_redacted(gateway: Server, keys: dict[str, str]) -> None:
    raw = client(gateway, keys["user"]).embeddings.with_raw_response.create(
        model=MODEL, input=[f"contact {EMAIL}", "nothing here"])
    record = gateway.audit_record(raw.headers["x-request-id"])
    assert record["pii"] == {"request": {"EMAIL": 1}}
    assert record["body"]["request"] == ["contact <EMAIL_1>", "nothing here"]


def test_findings_are_counted_in_metrics(gateway: Server) -> None:
    metrics = httpx.get(f"{gateway.url}/metrics").text
    assert 'vagt_pii_findings_total{direction="request",entity="EMAIL"}' in metrics


def test_the_dry_run_over_http(gateway: Server) -> None:
    text = f"Mail {EMAIL}, IBAN DK50 0040 0440 1162 43"
    with gateway.client as admin:
        default = admin.post("/admin/redact", json={"text": text}).json()
        assert default == {"text": "Mail <EMAIL_1>, IBAN <IBAN_1>", "blocked": [], "findings": [
            {"type": "EMAIL", "start": 5, "end": 29, "score": 0.95},
            {"type": "IBAN", "start": 36, "end": 58, "score": 0.95}]}
        tried = admin.post("/admin/redact", json={
            "text": text, "roles": ["x"], "policy": POLICY.replace(
                "request: {SECRET: block", "request: {IBAN: block, SECRET: block")}).json()
        assert tried["blocked"] == ["IBAN"]
        invalid = admin.post("/admin/redact", json={"text": "x", "policy": "version: 9"})
        assert invalid.status_code == 422
        assert invalid.json()["error"]["code"] == "invalid_policy"


def test_the_cli_dry_runs_json_and_jsonl(gateway: Server, tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    text = f"Mail {EMAIL} or call +45 32 12 34 56"
    one = subprocess.run([*VAGT, "redact", "--policy", str(policy), "--json"], input=text,
                         capture_output=True, text=True, cwd=ROOT, check=True)
    answer = json.loads(one.stdout)
    assert answer["text"] == "Mail <EMAIL_1> or call <PHONE_1>"
    assert [(f["type"], text[f["start"]:f["end"]]) for f in answer["findings"]] == [
        ("EMAIL", EMAIL), ("PHONE", "+45 32 12 34 56")]
    lines = "".join(json.dumps({"text": t}) + "\n" for t in (text, "nothing", "ÆØÅ " + EMAIL))
    many = subprocess.run([*VAGT, "redact", "--policy", str(policy), "--jsonl", "--role",
                           "finance"], input=lines, capture_output=True, text=True, cwd=ROOT,
                          check=True)
    answers = [json.loads(line) for line in many.stdout.splitlines()]
    assert len(answers) == 3
    assert answers[1] == {"text": "nothing", "findings": []}
    assert answers[2]["findings"][0]["start"] == 4  # characters, not bytes
    blocked = subprocess.run([*VAGT, "redact", "--policy", str(policy)],
                             input="key AKIAIOSFODNN7EXAMPLE", capture_output=True, text=True,
                             cwd=ROOT, check=True)
    assert "SECRET" in blocked.stderr
