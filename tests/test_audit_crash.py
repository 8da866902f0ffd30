"""The audit log survives the gateway being killed: every request that got a response has its
record after a restart, and the chain verifies."""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
import time
from pathlib import Path

import httpx
import psutil

from tests.conftest import MODEL, Server, run_vagt


def _load(server: Server, worker: int, answered: list[str], stop: threading.Event) -> None:
    with httpx.Client(base_url=server.url, headers=server.auth, timeout=30) as client:
        while not stop.is_set():
            try:
                if worker % 2:
                    response = client.get("/v1/models")
                    response.read()
                else:  # a short stream, read to its last byte
                    with client.stream("POST", "/v1/chat/completions", json={
                            "model": MODEL, "max_tokens": 2, "stream": True,
                            "messages": [{"role": "user", "content": "hi"}]}) as response:
                        body = b"".join(response.iter_bytes())
                    if not body.endswith(b"data: [DONE]\n\n"):
                        continue
            except httpx.HTTPError:
                continue  # the gateway died under this request: it got no response
            if response.status_code == 200:
                answered.append(response.headers["x-request-id"])


def test_records_of_answered_requests_survive_sigkill(data_dir: Path) -> None:
    env = {"VAGT_AUDIT_CHAIN": "crash"}
    server = Server(data_dir, "--workers", "1", "--threads", "1", env=env)
    answered: list[str] = []
    stop = threading.Event()
    threads = [threading.Thread(target=_load, args=(server, n, answered, stop))
               for n in range(6)]
    for thread in threads:
        thread.start()
    time.sleep(4.0)
    family = [server.process.pid, *(c.pid for c in
                                   psutil.Process(server.process.pid).children(recursive=True))]
    for pid in family:  # the gateway and its model workers, all at once, mid-load
        os.kill(pid, signal.SIGKILL)
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    server.process.wait()
    assert len(answered) > 50, "the load did not get going"

    restarted = Server(data_dir, "--workers", "1", "--threads", "1", env=env)
    try:
        restarted.key = server.key  # the first start made it
        with restarted.client as client:
            verified = client.get("/admin/audit/verify").json()  # flushes the replay, too
        assert verified["ok"] is True, verified
        with sqlite3.connect(data_dir / "vagt.db") as db:
            recorded = {row[0] for row in db.execute("SELECT id FROM audit_records")}
        print(f"{len(answered)} answered; replayed from the spool:",
              [line.strip() for line in restarted.log if "replaying" in line])
        missing = set(answered) - recorded
        assert not missing, f"{len(missing)} of {len(answered)} answered requests unrecorded"
        cli = run_vagt("audit", "verify", "--data-dir", str(data_dir), env=env)
        assert cli.returncode == 0, cli.stdout + cli.stderr
    finally:
        restarted.stop()
