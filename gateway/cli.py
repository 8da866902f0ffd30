"""The `vagt` command: serve, and manage the model catalogue."""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
import uvicorn
import yaml

from gateway.api.context import Context
from gateway.app import build_app
from gateway.auth.apikeys import create_key
from gateway.auth.keystore import KeyExists, KeyStore, open_key_store
from gateway.durations import parse_lifetime
from gateway.policy import PolicyError
from gateway.settings import Settings
from inference import fetch
from inference.errors import InferenceError
from inference.modelfile import parse_modelfile
from inference.registry import Catalogue

T = TypeVar("T")
CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def _settings(**overrides: Any) -> Settings:
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


def _fail(message: str) -> NoReturn:
    click.secho(f"error: {message}", fg="red", err=True)
    sys.exit(1)


@click.group(context_settings=CONTEXT)
@click.version_option(package_name="vagt")
def main() -> None:
    """Vagt: a security gateway that serves local language models."""


# --- serve -------------------------------------------------------------------------------------

@main.command()
@click.option("--host", help="Interface to listen on (default 127.0.0.1).")
@click.option("--port", type=int, help="Port to listen on; 0 picks a free one (default 8080).")
@click.option("--policy", type=click.Path(path_type=Path), help="Policy YAML file.")
@click.option("--data-dir", type=click.Path(path_type=Path), help="Catalogue and model files.")
@click.option("--workers", type=int, help="Worker processes per loaded model (default 1).")
@click.option("--threads", type=int, help="CPU threads per worker (default: all cores).")
@click.option("--max-queue", type=int, help="Requests that may wait for a worker (default 8).")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]))
def serve(host: str | None, port: int | None, policy: Path | None, data_dir: Path | None,
          workers: int | None, threads: int | None, max_queue: int | None,
          log_level: str) -> None:
    """Serve the OpenAI and Ollama APIs over the local catalogue's models."""
    settings = _settings(host=host, port=port, policy=policy, data_dir=data_dir, workers=workers,
                         threads=threads, max_queue=max_queue)
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: "
                        "%(message)s", stream=sys.stderr)
    try:
        _ensure_default_model(settings)
    except InferenceError as exc:
        _fail(str(exc))
    sock = socket.socket(socket.AF_INET6 if ":" in settings.host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((settings.host, settings.port))
    except OSError as exc:
        _fail(f"cannot listen on {settings.host}:{settings.port}: {exc.strerror}")
    bound_port = sock.getsockname()[1]
    try:
        app = build_app(settings, on_ready=lambda ctx, key: _banner(ctx, bound_port, key))
    except (PolicyError, InferenceError) as exc:
        _fail(str(exc))
    config = uvicorn.Config(app, log_level=log_level, access_log=False,
                            timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    asyncio.run(server.serve(sockets=[sock]))
    if not server.started:
        sys.exit(1)


def _ensure_default_model(settings: Settings) -> None:
    """On a fresh data directory, install the library's default model (a second run reuses it)."""
    catalogue = Catalogue.load(settings.catalogue_path)
    if catalogue.models:
        return
    library = Catalogue.library()
    assert library.default is not None
    spec = library.resolve(library.default)
    fetch.pull(spec, settings.models_dir)
    catalogue.with_model(spec).save(settings.catalogue_path)


def _banner(context: Context, port: int, first_key: str | None) -> None:
    host = context.settings.host
    url = f"http://{'[' + host + ']' if ':' in host else host}:{port}"
    names = [spec.name for spec in context.catalogue.models]
    model = context.catalogue.default or (names[0] if names else "MODEL")
    lines = [f"Vagt is listening on {url}",
             f"  models: {', '.join(names) or '(none)'}  (default: {model})"]
    if first_key is not None:
        lines.append(f"  admin API key (shown once; store it now): {first_key}")
    key = first_key or "$VAGT_API_KEY"
    lines += ["  try:",
              f"    curl {url}/v1/chat/completions -H 'Authorization: Bearer {key}' "
              f"-H 'Content-Type: application/json' "
              f"-d '{{\"model\": \"{model}\", \"messages\": [{{\"role\": \"user\", "
              f"\"content\": \"Say hello\"}}]}}'"]
    print("\n".join(lines), flush=True)


# --- models ------------------------------------------------------------------------------------

data_dir_option = click.option("--data-dir", type=click.Path(path_type=Path),
                               help="Catalogue and model files.")


@main.group(context_settings=CONTEXT)
def models() -> None:
    """List, show, pull, remove and import models."""


@models.command("list")
@data_dir_option
def models_list(data_dir: Path | None) -> None:
    """Models in the local catalogue."""
    settings = _settings(data_dir=data_dir)
    catalogue = _load(settings)
    click.echo(f"{'NAME':<28} {'FORMAT':<6} {'SIZE':>9}  {'STATUS':<8} ALIASES")
    for spec in catalogue.models:
        path = spec.path(settings.models_dir)
        size = f"{path.stat().st_size / 1e6:.0f} MB" if path.exists() else "-"
        status = "present" if path.exists() else "missing"
        marker = " (default)" if spec.name == catalogue.default else ""
        click.echo(f"{spec.name:<28} {spec.format:<6} {size:>9}  {status:<8} "
                   f"{', '.join(spec.aliases)}{marker}")


@models.command("show")
@click.argument("name")
@data_dir_option
def models_show(name: str, data_dir: Path | None) -> None:
    """A model's catalogue entry."""
    settings = _settings(data_dir=data_dir)
    try:
        spec = _load(settings).resolve(name)
    except InferenceError as exc:
        _fail(str(exc))
    data = spec.model_dump(mode="json", exclude_defaults=True)
    data["path"] = str(spec.path(settings.models_dir))
    click.echo(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), nl=False)


@models.command("pull")
@click.argument("name")
@data_dir_option
def models_pull(name: str, data_dir: Path | None) -> None:
    """Fetch a model's weights (from the local catalogue or the library) and verify them."""
    settings = _settings(data_dir=data_dir)
    catalogue = _load(settings)
    try:
        spec = catalogue.find(name) or Catalogue.library().resolve(name)
        path = fetch.pull(spec, settings.models_dir)
    except InferenceError as exc:
        _fail(str(exc))
    catalogue.with_model(spec).save(settings.catalogue_path)
    click.echo(f"{spec.name}: {path} (sha256 {spec.sha256[:12]}…)")


@models.command("rm")
@click.argument("name")
@data_dir_option
def models_rm(name: str, data_dir: Path | None) -> None:
    """Remove a model from the catalogue, and its weights when no other model uses them."""
    settings = _settings(data_dir=data_dir)
    catalogue = _load(settings)
    try:
        spec = catalogue.resolve(name)
    except InferenceError as exc:
        _fail(str(exc))
    remaining = catalogue.without(spec.name)
    remaining.save(settings.catalogue_path)
    path = spec.path(settings.models_dir)
    shared = any(m.path(settings.models_dir) == path for m in remaining.models)
    if not shared and path.is_relative_to(settings.models_dir):
        path.unlink(missing_ok=True)
    click.echo(f"removed {spec.name}")


@models.command("import-modelfile")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", help="Name in the catalogue (default: the file's name without suffix).")
@data_dir_option
def models_import(file: Path, name: str | None, data_dir: Path | None) -> None:
    """Add a model to the catalogue from an Ollama Modelfile."""
    settings = _settings(data_dir=data_dir)
    catalogue = _load(settings)
    try:
        spec = parse_modelfile(file.read_text(encoding="utf-8"), name=name or file.stem,
                               base=file.parent, catalogue=catalogue)
    except InferenceError as exc:
        _fail(f"{file}: {exc}")
    catalogue.with_model(spec).save(settings.catalogue_path)
    click.echo(f"imported {spec.name} from {file}")


# --- keys --------------------------------------------------------------------------------------

store_options = [
    click.option("--data-dir", type=click.Path(path_type=Path), help="Where vagt.db lives."),
    click.option("--database-url",
                 help="sqlite:///PATH or postgresql://… (default: DATA_DIR/vagt.db)."),
]


def _with_store(function: Any) -> Any:
    for option in reversed(store_options):
        function = option(function)
    return function


async def _in_store(settings: Settings, work: Callable[[KeyStore], Awaitable[T]]) -> T:
    store = await open_key_store(settings.store_url)
    try:
        return await work(store)
    finally:
        await store.close()


@main.group(context_settings=CONTEXT)
def keys() -> None:
    """Create, list and revoke API keys for service accounts."""


@keys.command("create")
@click.option("--name", required=True, help="A unique name for the key (e.g. the service).")
@click.option("--role", required=True, help="The role the key holds (mapped by the policy).")
@click.option("--expires", help="Lifetime, e.g. 90d, 12h, 30m (default: never).")
@_with_store
def keys_create(name: str, role: str, expires: str | None, data_dir: Path | None,
                database_url: str | None) -> None:
    """Create a key and print its secret once, on stdout."""
    settings = _settings(data_dir=data_dir, database_url=database_url)
    try:
        lifetime = None if expires is None else parse_lifetime(expires)
    except ValueError as exc:
        _fail(str(exc))
    expires_at = None if lifetime is None else time.time() + lifetime
    try:
        created = asyncio.run(_in_store(settings, lambda s: create_key(s, name, role, expires_at)))
    except KeyExists:
        _fail(f"a key named '{name}' already exists")
    click.echo(created.secret)
    click.echo(f"created key '{name}' with role '{role}'"
               + ("" if expires_at is None else f", expiring {_when(expires_at)}")
               + ". The secret above is shown only now.", err=True)


@keys.command("list")
@_with_store
def keys_list(data_dir: Path | None, database_url: str | None) -> None:
    """Keys with their role, state, expiry and last use (never their secrets)."""
    settings = _settings(data_dir=data_dir, database_url=database_url)
    records = asyncio.run(_in_store(settings, lambda s: s.all()))
    now = time.time()
    click.echo(f"{'NAME':<24} {'ROLE':<12} {'PREFIX':<14} {'STATE':<8} {'EXPIRES':<17} LAST USED")
    for r in records:
        state = ("revoked" if r.revoked_at is not None
                 else "expired" if not r.usable(now) else "active")
        click.echo(f"{r.name:<24} {r.role:<12} {r.prefix + '…':<14} {state:<8} "
                   f"{_when(r.expires_at):<17} {_when(r.last_used_at)}")


@keys.command("revoke")
@click.argument("name")
@_with_store
def keys_revoke(name: str, data_dir: Path | None, database_url: str | None) -> None:
    """Revoke a key; the gateway refuses it within the policy's api_keys.cache_ttl."""
    settings = _settings(data_dir=data_dir, database_url=database_url)
    if not asyncio.run(_in_store(settings, lambda s: s.revoke(name))):
        _fail(f"no active key named '{name}'")
    click.echo(f"revoked key '{name}'")


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(timestamp))


def _load(settings: Settings) -> Catalogue:
    try:
        return Catalogue.load(settings.catalogue_path)
    except InferenceError as exc:
        _fail(str(exc))


if __name__ == "__main__":
    main()
