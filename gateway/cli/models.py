"""`vagt models`: the local model catalogue."""

from __future__ import annotations

from pathlib import Path

import click
import yaml

from gateway.cli.common import CONTEXT, data_dir_option, fail, reported, settings_from
from gateway.settings import Settings
from inference import fetch
from inference.errors import InferenceError
from inference.modelfile import parse_modelfile
from inference.registry import Catalogue, ModelSpec


@click.group(context_settings=CONTEXT)
def models() -> None:
    """List, show, pull, remove and import models."""


@models.command("list")
@data_dir_option
def models_list(data_dir: Path | None) -> None:
    """Models in the local catalogue."""
    settings = settings_from(data_dir=data_dir)
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
    settings = settings_from(data_dir=data_dir)
    with reported(InferenceError):
        spec = _load(settings).resolve(name)
    data = spec.model_dump(mode="json", exclude_defaults=True)
    data["path"] = str(spec.path(settings.models_dir))
    click.echo(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), nl=False)


@models.command("pull")
@click.argument("name")
@data_dir_option
def models_pull(name: str, data_dir: Path | None) -> None:
    """Fetch a model's weights (from the local catalogue or the library) and verify them."""
    settings = settings_from(data_dir=data_dir)
    catalogue = _load(settings)
    with reported(InferenceError):
        spec = catalogue.find(name) or Catalogue.library().resolve(name)
        path = install(spec, settings)
    click.echo(f"{spec.name}: {path} (sha256 {spec.sha256[:12]}…)")


@models.command("rm")
@click.argument("name")
@data_dir_option
def models_rm(name: str, data_dir: Path | None) -> None:
    """Remove a model from the catalogue, and its weights when no other model uses them."""
    settings = settings_from(data_dir=data_dir)
    catalogue = _load(settings)
    with reported(InferenceError):
        spec = catalogue.resolve(name)
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
    settings = settings_from(data_dir=data_dir)
    catalogue = _load(settings)
    try:
        spec = parse_modelfile(file.read_text(encoding="utf-8"), name=name or file.stem,
                               base=file.parent, catalogue=catalogue)
    except InferenceError as exc:
        fail(f"{file}: {exc}")
    catalogue.with_model(spec).save(settings.catalogue_path)
    click.echo(f"imported {spec.name} from {file}")


def install(spec: ModelSpec, settings: Settings) -> Path:
    """Fetch and verify ``spec``'s weights, then record it in the local catalogue."""
    path = fetch.pull(spec, settings.models_dir)
    Catalogue.load(settings.catalogue_path).with_model(spec).save(settings.catalogue_path)
    return path


def _load(settings: Settings) -> Catalogue:
    with reported(InferenceError):
        return Catalogue.load(settings.catalogue_path)
