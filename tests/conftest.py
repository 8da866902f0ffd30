"""Fixtures: the real SmolLM2 model and real `vagt serve` processes on ephemeral loopback ports."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import ollama
import openai
import psutil
import pytest
import yaml

from inference.registry import Catalogue
from tests.servers.idp import IdentityProvider
from tests.servers.ldap import Directory
from tests.servers.postgres import Postgres
from tests.servers.redis import RedisServer

ROOT = Path(__file__).resolve().parent.parent
VAGT = [sys.executable, "-m", "gateway.cli"]
MODEL = "smollm2:135m"
DEFAULT_POLICY = ROOT / "policies" / "default.yaml"


def run_vagt(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*VAGT, *args], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, **(env or {})}, timeout=300, check=False)


@pytest.fixture(scope="session")
def model_path() -> Path:
    """The real SmolLM2 GGUF, provisioned by `make test` (pulled here if it is not)."""
    data_dir = Path(os.environ.get("VAGT_TEST_DATA_DIR", ROOT / ".cache" / "test-data"))
    spec = Catalogue.library().resolve(MODEL)
    path = spec.path(data_dir / "models")
    if not path.exists():
        result = run_vagt("models", "pull", MODEL, "--data-dir", str(data_dir))
        assert result.returncode == 0, result.stderr
    return path.resolve()


def write_catalogue(data_dir: Path, model_path: Path, **overrides: object) -> Catalogue:
    """A local catalogue whose default model is the real SmolLM2 file (by absolute path)."""
    spec = Catalogue.library().resolve(MODEL).model_copy(
        update={"file": str(model_path), **overrides})
    catalogue = Catalogue().with_model(spec)
    catalogue.save(data_dir / "models.yaml")
    return catalogue


def add_model(data_dir: Path, entry: dict[str, object]) -> None:
    path = data_dir / "models.yaml"
    data = yaml.safe_load(path.read_text())
    data["models"].append(entry)
    path.write_text(yaml.safe_dump(data))


def open_policy(roles: tuple[str, ...], extra: str = "") -> str:
    """A policy text where each role is held by the API keys of the same role and may use every
    model, followed by ``extra`` YAML (a limits section, say)."""
    members = "".join(f"  {r}:\n    members: {{api_key_roles: [{r}]}}\n" for r in roles)
    return (f"version: 1\nroles:\n{members}rules:\n  - roles: [{', '.join(roles)}]\n"
            f"    allow: [chat, complete, embed, models:list]\n{extra}")


class Server:
    """A real `vagt serve` process on an ephemeral port."""

    def __init__(self, data_dir: Path, *args: str, env: dict[str, str] | None = None,
                 policy: Path = DEFAULT_POLICY) -> None:
        self.data_dir = data_dir
        self.env = env or {}  # the CLI, run beside this server, sees the same environment
        command = [*VAGT, "serve", "--port", "0", "--data-dir", str(data_dir),
                   "--policy", str(policy), *args]
        self.process = subprocess.Popen(
            command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, **(env or {})},
        )
        self.banner: list[str] = []
        self.log: list[str] = []
        self.url, self.key = self._wait_for_banner()
        threading.Thread(target=self._drain, daemon=True).start()

    def _wait_for_banner(self) -> tuple[str, str]:
        """The URL and the first admin API key, read from the banner."""
        assert self.process.stdout is not None
        assert self.process.stderr is not None
        threading.Thread(target=self._collect_stderr, daemon=True).start()
        url = key = ""
        for line in self.process.stdout:
            self.banner.append(line)
            if match := re.search(r"listening on (http://\S+)", line):
                url = match.group(1)
            if match := re.search(r"admin API key .*: (vagt_\S+)", line):
                key = match.group(1)
            if "curl " in line:
                return url, key
        self.process.wait(timeout=10)
        raise RuntimeError(f"vagt serve exited: {''.join(self.log)[-2000:]}")

    def vagt(self, *args: str) -> subprocess.CompletedProcess[str]:
        """The CLI on this server's data directory and environment (its database too)."""
        return run_vagt(*args, "--data-dir", str(self.data_dir), env=self.env)

    def create_key(self, name: str, role: str, *options: str) -> str:
        """A new API key for this server, made with the CLI; its secret."""
        result = run_vagt("keys", "create", "--name", name, "--role", role, "--data-dir",
                          str(self.data_dir), *options, env=self.env)
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    def audit_record(self, request_id: str, timeout: float = 5.0) -> dict[str, Any]:
        """The audit record of ``request_id`` (read with the admin key), once the flusher has
        put it in the sink."""
        deadline = time.monotonic() + timeout
        with self.client as client:
            while True:
                response = client.get(f"/admin/audit/records/{request_id}")
                if response.status_code == 200:
                    record: dict[str, Any] = response.json()
                    return record
                assert response.status_code == 404, response.text
                assert time.monotonic() < deadline, f"no audit record for {request_id}"
                time.sleep(0.05)

    def as_key(self, secret: str) -> httpx.Client:
        """An HTTP client that presents ``secret``."""
        return httpx.Client(base_url=self.url, timeout=120,
                            headers={"Authorization": f"Bearer {secret}"})

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def openai(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=self.key, max_retries=0)

    def ollama(self) -> ollama.Client:
        return ollama.Client(host=self.url, headers=self.auth)

    def _collect_stderr(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.log.append(line)

    def _drain(self) -> None:
        assert self.process.stdout is not None
        for _ in self.process.stdout:
            pass

    @property
    def client(self) -> httpx.Client:
        """An HTTP client that presents the admin key."""
        return httpx.Client(base_url=self.url, timeout=60, headers=self.auth)

    def workers(self) -> list[int]:
        """PIDs of this server's live model worker processes."""
        pids = []
        for child in psutil.Process(self.process.pid).children(recursive=True):
            try:
                if "inference.worker" in " ".join(child.cmdline()):
                    pids.append(child.pid)
            except psutil.Error:  # exited (or a zombie about to be reaped) meanwhile
                continue
        return pids

    def logged(self, text: str, timeout: float = 5.0) -> bool:
        """Whether the server writes ``text`` to its log within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in line for line in self.log):
                return True
            time.sleep(0.05)
        return False

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def data_dir(tmp_path: Path, model_path: Path) -> Path:
    directory = tmp_path / "data"
    write_catalogue(directory, model_path)
    return directory


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, model_path: Path) -> Iterator[Server]:
    """One gateway per test module, serving the real SmolLM2 with two workers."""
    directory = tmp_path_factory.mktemp("data")
    write_catalogue(directory, model_path)
    running = Server(directory, "--workers", "2", "--threads", "1")
    yield running
    running.stop()


@pytest.fixture
def start_server(tmp_path: Path, model_path: Path) -> Iterator[type[Server]]:
    """Start servers with their own options; all are stopped after the test."""
    started: list[Server] = []

    class Started(Server):
        def __init__(self, data_dir: Path, *args: str, env: dict[str, str] | None = None,
                     policy: Path = DEFAULT_POLICY) -> None:
            super().__init__(data_dir, *args, env=env, policy=policy)
            started.append(self)

    yield Started
    for running in started:
        running.stop()


@pytest.fixture(scope="session")
def idp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IdentityProvider]:
    """A real OpenID Provider (npm oidc-provider) for the whole session."""
    provider = IdentityProvider(tmp_path_factory.mktemp("idp"))
    yield provider
    provider.stop()


@pytest.fixture(scope="session")
def directory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Directory]:
    """A real OpenLDAP slapd with users, groups and nested groups."""
    slapd = Directory(tmp_path_factory.mktemp("ldap"))
    yield slapd
    slapd.stop()


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """A throwaway PostgreSQL server."""
    server = Postgres()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A throwaway Redis server."""
    server = RedisServer()
    yield server
    server.stop()
