"""Process settings: how to run (flags and VAGT_* environment), never what is allowed (policy)."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "vagt"


def _cores() -> int:
    return max(1, len(os.sched_getaffinity(0)))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VAGT_", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    data_dir: Path = Field(default_factory=_default_data_dir)
    policy: Path = Path("policies/default.yaml")
    workers: int = Field(default=1, ge=1, description="worker processes per loaded model")
    threads: int = Field(default_factory=_cores, ge=1, description="CPU threads per worker")
    max_queue: int = Field(default=8, ge=0, description="requests that may wait for a worker")
    queue_timeout: float = Field(default=60.0, gt=0)
    keep_alive: float = Field(default=300.0, description="seconds an idle model stays loaded")
    max_loaded_models: int = Field(default=2, ge=1)
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    preload: bool = Field(default=True, description="load the default model at start")
    metrics: bool = Field(default=False, description="serve Prometheus metrics at /metrics")
    limits_url: str | None = Field(
        default=None, description="redis://… to share limits across replicas; default: memory")
    audit_chain: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9._-]{1,64}$",
        description="this replica's audit chain; default: HOST-KEYID, one per signing key")
    audit_public_keys: tuple[Path, ...] = Field(
        default=(), description="other replicas' audit public keys (PEM), trusted by verify")
    redaction_key: SecretStr | None = Field(
        default=None, description="the key of the redactor's hash mode (same key, same "
        "tokens: share it across replicas); default: made in DATA_DIR/redaction.key")
    database_url: str | None = Field(
        default=None, description="sqlite:///PATH or postgresql://…; default: DATA_DIR/vagt.db")

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def catalogue_path(self) -> Path:
        return self.data_dir / "models.yaml"

    def hash_key(self) -> bytes:
        """The key behind the redactor's ``hash`` mode: ``redaction_key``, else a random one
        made once in the data directory (readable by its owner only)."""
        if self.redaction_key is not None:
            return self.redaction_key.get_secret_value().encode()
        path = self.data_dir / "redaction.key"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileExistsError):
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as out:
                    out.write(secrets.token_hex(32))
        return path.read_bytes().strip()

    @property
    def audit_dir(self) -> Path:
        return self.data_dir / "audit"

    @property
    def audit_key(self) -> Path:
        """The gateway's Ed25519 key that signs its audit checkpoints."""
        return self.audit_dir / "signing.key"

    @property
    def store_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'vagt.db'}"
