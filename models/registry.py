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

from models.features import norm_constants
from models.fusion import FusionParams, Thresholds
from wardwatch.errors import ModelError
from wardwatch.ingest import json_kind

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
    """A version's metadata, checked by :func:`check_metadata` (RegistryError if unusable)."""
    path = version_dir(root, name, version) / "metadata.json"
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise RegistryError(f"no model {name} {version} in {root}") from None
    except OSError as exc:
        raise RegistryError(f"cannot read metadata for {name} {version}: {exc}") from None
    try:
        meta = json.loads(raw)
    except UnicodeDecodeError as exc:  # before ValueError: JSONDecodeError is one too
        raise RegistryError(f"malformed metadata for {name} {version}: not UTF-8 ({exc})") from None
    except ValueError as exc:  # JSONDecodeError
        raise RegistryError(f"malformed metadata for {name} {version}: {exc}") from None
    return check_metadata(meta, name, version)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_matrix(value: object, width: int | None) -> bool:
    """A non-empty list of equally long, non-empty lists of numbers (``width`` long)."""
    if not isinstance(value, list) or not value:
        return False
    rows = [r for r in value if isinstance(r, list) and r and all(_is_number(x) for x in r)]
    if len(rows) != len(value) or len({len(r) for r in rows}) != 1:
        return False
    return width is None or len(rows[0]) == width


def check_metadata(meta: object, name: str, version: str) -> dict[str, Any]:
    """``meta`` if it is a JSON object whose keys a worker reads have usable types.

    A key that is absent (or null) is left to the loader, which refuses a model without
    feature names or hidden size and skips what is optional; a key that is present with a
    wrong type is refused here, so a corrupt file is a :class:`RegistryError` (a
    :class:`~wardwatch.errors.ModelError`) and never a crash later on."""
    where = f"malformed metadata for {name} {version}"
    if not isinstance(meta, dict):
        raise RegistryError(f"{where}: expected a JSON object, got {json_kind(meta)}")

    def refuse(key: str, expected: str) -> RegistryError:
        return RegistryError(f"{where}: {key!r} must be {expected}, got {json_kind(meta[key])}")

    if meta.get("sha256") is not None and not isinstance(meta["sha256"], str):
        raise refuse("sha256", "a string")
    names = meta.get("feature_names")
    if names is not None and not (
        isinstance(names, list) and all(isinstance(n, str) for n in names)
    ):
        raise refuse("feature_names", "an array of strings")
    for key in ("hidden_size", "hidden"):
        value = meta.get(key)
        if value is not None and not (isinstance(value, int) and not isinstance(value, bool)):
            raise refuse(key, "an integer")
    for key in ("normalization", "norm"):
        norm = meta.get(key)
        if norm is None:
            continue
        if not isinstance(norm, dict):
            raise refuse(key, "an object")
        if norm:  # an empty one means the default normalization
            try:
                norm_constants(norm)
            except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
                detail = f"missing {exc}" if isinstance(exc, KeyError) else str(exc)
                raise RegistryError(f"{where}: unusable {key!r} ({detail})") from None
    for key, parse in (
        ("fusion", FusionParams.from_meta),
        ("operating_points", Thresholds.from_meta),
    ):
        try:
            parse(meta)
        except ValueError as exc:
            raise RegistryError(f"{where}: unusable {key!r} ({exc})") from None
    smoke = meta.get("smoke")
    if smoke is not None:
        if not isinstance(smoke, dict):
            raise refuse("smoke", "an object")
        if smoke:  # an empty one means no smoke check
            width = len(names) if names else None
            hidden = meta.get("hidden_size") or meta.get("hidden")
            hidden = hidden if isinstance(hidden, int) and hidden > 0 else None
            features: Any = smoke.get("features")
            h_in: Any = smoke.get("h_in")
            risk: Any = smoke.get("risk")
            if not _is_matrix(features, width):
                raise RegistryError(
                    f"{where}: 'smoke' needs 'features', rows of {width or 'n'} numbers"
                )
            if not _is_matrix(h_in, hidden):
                raise RegistryError(
                    f"{where}: 'smoke' needs 'h_in', rows of {hidden or 'h'} numbers"
                )
            n = len(features)
            if len(h_in) != n or not (
                isinstance(risk, list) and len(risk) == n and all(_is_number(x) for x in risk)
            ):
                raise RegistryError(
                    f"{where}: 'smoke' needs {n} rows of 'h_in' and {n} numbers in 'risk'"
                )
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
    try:
        text = path.read_bytes().decode("utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise RegistryError(f"cannot read {path}: {exc}") from None
    return text or None
