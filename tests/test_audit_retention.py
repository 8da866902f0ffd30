"""Pruning: by the policy's retention in a running gateway, and by `vagt audit prune`; what is
left still verifies, from the signed anchor where each chain now begins."""

from __future__ import annotations

import json
import time
from pathlib import Path

from tests.conftest import DEFAULT_POLICY, Server


def test_the_policy_retention_prunes_old_records_and_says_so(
        start_server: type[Server], data_dir: Path, tmp_path: Path) -> None:
    first = start_server(data_dir, "--workers", "1", "--threads", "1")
    with first.client as client:
        old = [client.get("/v1/models").headers["x-request-id"] for _ in range(3)]
    first.stop()
    time.sleep(1.5)
    policy = tmp_path / "policy.yaml"
    policy.write_text(DEFAULT_POLICY.read_text().replace("# retention: 365d", "retention: 1s"))
    second = start_server(data_dir, "--workers", "1", "--threads", "1", policy=policy)
    second.key = first.key
    with second.client as client:
        deadline = time.monotonic() + 10
        while client.get(f"/admin/audit/records/{old[0]}").status_code != 404:
            assert time.monotonic() < deadline, "the old records were not pruned"
            time.sleep(0.2)
        verified = client.get("/admin/audit/verify").json()
        assert verified["ok"] is True, verified
        assert verified["chains"][0]["first_seq"] > 1  # it begins at its prune anchor
        prunes = client.get("/admin/audit", params={"action": "audit:prune"}).json()["records"]
    [prune] = prunes
    assert (prune["kind"], prune["subject"], prune["api"]) == ("admin", "vagt", "gateway")
    assert prune["detail"]["reason"] == "retention"
    assert sum(prune["detail"]["removed"].values()) >= 3


def test_the_cli_prunes_before_a_date_and_the_rest_verifies(
        start_server: type[Server], data_dir: Path) -> None:
    server = start_server(data_dir, "--workers", "1", "--threads", "1")
    with server.client as client:
        for _ in range(4):
            client.get("/v1/models")
        client.get("/admin/audit/verify")  # flushed
        cutoff = client.get("/admin/audit", params={"limit": 1}).json()["records"][0]["time"]
        time.sleep(0.01)
        kept = client.get("/v1/models").headers["x-request-id"]
        client.get("/admin/audit/verify")
    refused = server.vagt("audit", "prune", "--before", cutoff)  # no --yes, no terminal
    assert refused.returncode != 0
    pruned = server.vagt("audit", "prune", "--before", cutoff, "--yes")
    assert pruned.returncode == 0, pruned.stderr
    assert "pruned" in pruned.stdout
    verified = server.vagt("audit", "verify", "--json")
    assert verified.returncode == 0, verified.stdout
    [chain] = json.loads(verified.stdout)
    assert chain["first_seq"] > 1
    with server.client as client:
        assert client.get(f"/admin/audit/records/{kept}").status_code == 200
        prunes = client.get("/admin/audit", params={"action": "audit:prune"}).json()["records"]
        assert client.get("/admin/audit/verify").json()["ok"] is True
    [prune] = prunes
    assert (prune["api"], prune["auth_method"]) == ("cli", "local")
    assert prune["detail"]["before"].startswith(cutoff[:19])
