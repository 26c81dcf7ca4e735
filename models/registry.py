"""Model registry, read side (no torch): what a worker needs to find and trust a model.

Layout (written by :mod:`trainer.registry`)::

    <root>/<model_name>/<version>/model.onnx
    <root>/<model_name>/<version>/metadata.json   sha256, I/O names, feature names, norms, metrics
    <root>/<model_name>/<version>/report.md
    <root>/<model_name>/PROMOTED                  text: the promoted version
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from wardwatch.errors import ModelError

VERSION_RE = re.compile(r"^v(\d+)$")
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class RegistryError(ModelError):
    """A missing, malformed or tampered registry entry."""


def check_name(kind: str, value: str) -> str:
    if not SAFE_NAME.match(value):
        raise RegistryError(f"invalid {kind} {value!r}")
    return value


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def version_key(v: str) -> tuple[int, str]:
    m = VERSION_RE.match(v)
    return (int(m.group(1)) if m else -1, v)


def list_models(root: Path) -> list[str]:
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and SAFE_NAME.match(p.name))


def list_versions(root: Path, name: str) -> list[str]:
    """Versions of ``name`` that have a metadata file, oldest first (v1, v2, ..., v10)."""
    d = root / check_name("model name", name)
    if not d.is_dir():
        return []
    found = [p.name for p in d.iterdir() if p.is_dir() and (p / "metadata.json").is_file()]
    return sorted(found, key=version_key)


def version_dir(root: Path, name: str, version: str) -> Path:
    return root / check_name("model name", name) / check_name("version", version)


def load_metadata(root: Path, name: str, version: str) -> dict[str, Any]:
    path = version_dir(root, name, version)
    try:
        meta: dict[str, Any] = json.loads((path / "metadata.json").read_text())
    except FileNotFoundError:
        raise RegistryError(f"no model {name} {version} in {root}") from None
    except json.JSONDecodeError as exc:
        raise RegistryError(f"malformed metadata for {name} {version}: {exc}") from None
    return meta


def verify(root: Path, name: str, version: str, expected_sha256: str | None = None) -> str:
    """Check ``model.onnx`` against the metadata's sha256 (and ``expected_sha256``)."""
    meta = load_metadata(root, name, version)
    onnx_path = version_dir(root, name, version) / "model.onnx"
    if not onnx_path.is_file():
        raise RegistryError(f"{onnx_path} is missing")
    actual = sha256_file(onnx_path)
    if actual != meta.get("sha256"):
        raise RegistryError(
            f"sha256 mismatch for {name} {version}: metadata {meta.get('sha256')}, file {actual}"
        )
    if expected_sha256 is not None and actual != expected_sha256:
        raise RegistryError(
            f"sha256 mismatch for {name} {version}: promoted {expected_sha256}, file {actual}"
        )
    return actual


def promoted_version(root: Path, name: str) -> str | None:
    path = root / check_name("model name", name) / "PROMOTED"
    if not path.is_file():
        return None
    text = path.read_text().strip()
    return text or None
