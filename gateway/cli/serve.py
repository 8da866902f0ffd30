"""`vagt serve`: the gateway on a socket, with a banner that says how to call it."""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
from pathlib import Path

import click
import uvicorn

from gateway.api.context import Context
from gateway.app import build_app
from gateway.cli.common import CONTEXT, fail, reported, settings_from
from gateway.cli.models import install
from gateway.policy_source import PolicyError
from gateway.settings import Settings
from inference.errors import InferenceError
from inference.registry import Catalogue


@click.command(context_settings=CONTEXT)
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
    settings = settings_from(host=host, port=port, policy=policy, data_dir=data_dir,
                             workers=workers, threads=threads, max_queue=max_queue)
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: "
                        "%(message)s", stream=sys.stderr)
    with reported(InferenceError):
        _ensure_default_model(settings)
    # IPPROTO_TCP, not 0: asyncio turns TCP_NODELAY on only for sockets that say they are TCP.
    # Without it, Nagle's algorithm holds the second write of a response until the client's
    # delayed ACK — about 40 ms on every reused connection.
    sock = socket.socket(socket.AF_INET6 if ":" in settings.host else socket.AF_INET,
                         socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((settings.host, settings.port))
    except OSError as exc:
        fail(f"cannot listen on {settings.host}:{settings.port}: {exc.strerror}")
    bound_port = sock.getsockname()[1]
    with reported(PolicyError, InferenceError):
        app = build_app(settings, on_ready=lambda ctx, key: _banner(ctx, bound_port, key))
    config = uvicorn.Config(app, log_level=log_level, access_log=False,
                            timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    asyncio.run(server.serve(sockets=[sock]))
    if not server.started:
        sys.exit(1)


def _ensure_default_model(settings: Settings) -> None:
    """On a fresh data directory, install the library's default model (a second run reuses it)."""
    if Catalogue.load(settings.catalogue_path).models:
        return
    library = Catalogue.library()
    assert library.default is not None
    install(library.resolve(library.default), settings)


def _banner(context: Context, port: int, first_key: str | None) -> None:
    host = context.settings.host
    url = f"http://{'[' + host + ']' if ':' in host else host}:{port}"
    names = [spec.name for spec in context.catalogue.models]
    model = context.catalogue.default or (names[0] if names else "MODEL")
    audit = context.pipeline.audit
    lines = [f"Vagt is listening on {url}",
             f"  models: {', '.join(names) or '(none)'}  (default: {model})",
             f"  audit log: chain {audit.chain}, signed by key {audit.signer.key_id} "
             f"(review: {url}/admin/audit/ui)"]
    if first_key is not None:
        lines.append(f"  admin API key (shown once; store it now): {first_key}")
    key = first_key or "$VAGT_API_KEY"
    lines += ["  try:",
              f"    curl {url}/v1/chat/completions -H 'Authorization: Bearer {key}' "
              f"-H 'Content-Type: application/json' "
              f"-d '{{\"model\": \"{model}\", \"messages\": [{{\"role\": \"user\", "
              f"\"content\": \"Say hello\"}}]}}'"]
    print("\n".join(lines), flush=True)
