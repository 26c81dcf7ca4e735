"""The compact binary form of what the state store keeps per patient: the patient state
(the ``s`` field of ``{prefix}:v2:p:{tag}``) and the rows of the history ring
(``{prefix}:v2:h:{tag}``).

Both are MessagePack behind a two-byte header: ``0xC1`` (a byte MessagePack never uses,
and no JSON text starts with) and the format version (``STATE_FORMAT``, ``ROW_FORMAT``).
A value without the header is the JSON written before this encoding and is still read
(migration on read: the next commit writes the patient in the binary form). The fields
are laid out by position (see :func:`pack_state`, :func:`pack_row`); a later format gets
a new version byte and this module keeps reading the older ones.

Lossless by construction: a value the compact layout cannot hold exactly (an unknown
field, a digest that is not lowercase hex, a vital that is not a float) is written in a
general form, or the row as JSON, never rounded. The vital names the model's and the
patient's dictionaries are keyed by are written as one-byte codes (``NAMES``, fixed for
format 1: new names are appended, never reordered).
"""

from __future__ import annotations

import base64
import json
import zlib
from collections.abc import Mapping
from typing import Any

import msgpack

MAGIC = 0xC1
STATE_FORMAT = 1
ROW_FORMAT = 1
_STATE_HEAD = bytes((MAGIC, STATE_FORMAT))
_ROW_HEAD = bytes((MAGIC, ROW_FORMAT))
_NAME_EXT = 1  # MessagePack extension type: one of NAMES, by index

NAMES: tuple[str, ...] = (
    "heart_rate_bpm",
    "respiratory_rate_per_min",
    "spo2_pct",
    "on_oxygen",
    "systolic_bp_mmhg",
    "diastolic_bp_mmhg",
    "temperature_c",
    "consciousness",
    # the model's feature state (models.features.FeatureState)
    "prev_ts_ms",
    "last_value",
    "last_ts_ms",
    "last_z",
    "baseline",
    "spo2_scale",
)
"""Dictionary keys written as one-byte codes (format 1; append only)."""
_CODE = {name: msgpack.ExtType(_NAME_EXT, bytes((i,))) for i, name in enumerate(NAMES)}
ROW_VITALS: tuple[str, ...] = NAMES[:8]  # a history row's vitals, in this order
_NUMERIC_ROW = frozenset(ROW_VITALS) - {"on_oxygen", "consciousness"}
_ROW_SPEC = tuple((name, name in _NUMERIC_ROW) for name in ROW_VITALS)
_STATE_FIELDS = (
    "version",
    "watermark_ms",
    "wm_digests",
    "recent",
    "n_late",
    "latest",
    "baseline",
    "spo2_scale_device",
    "n_events",
    "alert",
    "model",
)
_MODEL_KEYS = ("version", "sha256", "features", "h")


def is_binary(raw: bytes | str | None) -> bool:
    return isinstance(raw, bytes | bytearray | memoryview) and raw[:1] == b"\xc1"


def _ext(code: int, data: bytes) -> Any:
    if code == _NAME_EXT and len(data) == 1 and data[0] < len(NAMES):
        return NAMES[data[0]]
    raise ValueError(f"unknown extension {code} in a stored value")


def _keys(d: Mapping[str, Any]) -> dict[Any, Any]:
    """``d`` with its known keys as codes (one level; values as they are)."""
    code = _CODE.get
    return {code(k, k): v for k, v in d.items()}


def _packable(value: object) -> Any:
    """An object MessagePack does not know: its ``to_json`` string (an event digest, a
    feature state left unserialized), as the JSON form stores it."""
    to_json = getattr(value, "to_json", None)
    if to_json is None:
        raise TypeError(f"Object of type {type(value).__name__} cannot be stored")
    return to_json()


def _digest_bin(d: Any) -> Any:
    """An event digest (16 lowercase hex digits) as its 8 bytes; anything else as text."""
    s = d if isinstance(d, str) else _packable(d)
    return _hex_bin(s) if len(s) == 16 else s


def _digest_str(d: Any) -> Any:
    return d.hex() if isinstance(d, bytes) else d


def _hex_bin(s: Any) -> Any:
    if isinstance(s, str):
        try:
            b = bytes.fromhex(s)
        except ValueError:
            return s
        if b.hex() == s:
            return b
    return s


_DEFLATE_FROM = 256  # characters: a longer text is stored deflated (bytes, not text)


def _text_pack(text: str | None) -> str | bytes | None:
    """The alert policy's state (JSON text): deflated when long (an open alert carries
    its explanation), as it is otherwise."""
    if text is None or len(text) < _DEFLATE_FROM:
        return text
    return zlib.compress(text.encode(), 1)


def _recent_pack(wm: int, recent: list[list[Any]]) -> list[Any]:
    """The ``[ts, digest]`` entries as ``[times before the watermark, the digests' bytes
    one after another]`` (8 each); entries of another shape as they are (``[None, …]``)."""
    try:
        digests = [d if isinstance(d, str) else _packable(d) for _, d in recent]
        joined = "".join(digests)
        blob = bytes.fromhex(joined)
        deltas = [wm - ts for ts, _ in recent]
    except (ValueError, TypeError):
        return [None, recent]
    if len(joined) != 16 * len(recent) or blob.hex() != joined:
        return [None, recent]
    return [deltas, blob]


def _recent_unpack(wm: int, packed: list[Any]) -> list[list[Any]]:
    deltas, blob = packed
    if deltas is None:
        return list(blob)
    if not deltas:
        return []
    digests = blob.hex(" ", 8).split(" ")  # 16 hex digits each, split in C
    return [[wm - d, h] for d, h in zip(deltas, digests, strict=True)]


def _model_pack(model: Mapping[str, Any] | None) -> Any:
    """The recurrent model state: ``[version, sha256 (32 bytes), features (a map with
    coded keys), hidden state (float32 bytes)]``; a state of another shape as a map."""
    if model is None:
        return None
    if tuple(model) != _MODEL_KEYS:
        return dict(model)
    features, h = model["features"], model["h"]
    if isinstance(features, Mapping):
        feats: Any = _feature_pack(features)
    elif isinstance(features, str):  # as the JSON form stores it: its fields, if a map
        try:
            parsed = json.loads(features)
        except ValueError:
            parsed = None
        feats = _feature_pack(parsed) if isinstance(parsed, dict) else features
    else:
        feats = _feature_pack(vars(features))  # a live FeatureState
    if isinstance(h, str):
        try:
            raw = base64.b64decode(h, validate=True)
        except ValueError:
            raw = None
        h = raw if raw is not None and base64.b64encode(raw).decode() == h else h
    return [model["version"], _hex_bin(model["sha256"]), feats, h]


def _feature_pack(f: Mapping[str, Any]) -> dict[Any, Any]:
    out = _keys(f)
    for name in ("last_value", "last_ts_ms", "last_z", "baseline"):
        code = _CODE[name]
        inner = out.get(code)
        if isinstance(inner, Mapping):
            out[code] = _keys(inner)
    return out


def _model_unpack(raw: Any) -> dict[str, Any] | None:
    if raw is None or isinstance(raw, dict):
        return raw
    version, sha, feats, h = raw
    return {
        "version": version,
        "sha256": sha.hex() if isinstance(sha, bytes) else sha,
        "features": feats,
        "h": h,
    }


def pack_state(state: Mapping[str, Any]) -> bytes:
    """A patient state's fields (``vars(PatientState)``) in the binary form.

    Times are written relative to the watermark (small integers); digests as bytes;
    the alert state is the alert policy's own (compact JSON) text, deflated (zlib) from
    256 characters on."""
    wm = int(state["watermark_ms"])
    latest = state["latest"]
    recent = _recent_pack(wm, state["recent"])
    extra = {k: v for k, v in state.items() if k not in _STATE_FIELDS}
    body = [
        state["version"],
        wm,
        [_digest_bin(d) for d in state["wm_digests"]],
        recent,
        state["n_late"],
        {_CODE.get(k, k): [v[0], wm - v[1]] for k, v in latest.items()},
        _keys(state["baseline"]),
        state["spo2_scale_device"],
        state["n_events"],
        _text_pack(state["alert"]),
        _model_pack(state["model"]),
        extra or None,
    ]
    packed: bytes = msgpack.packb(body, default=_packable, use_bin_type=True)
    return _STATE_HEAD + packed


def unpack_state(raw: bytes) -> dict[str, Any]:
    """The fields of a patient state from :func:`pack_state`'s bytes."""
    if raw[1] != STATE_FORMAT:
        raise ValueError(f"patient state in unknown format {raw[1]}")
    (
        version,
        wm,
        wm_digests,
        recent,
        n_late,
        latest,
        baseline,
        scale,
        n_events,
        alert,
        model,
        extra,
    ) = msgpack.unpackb(  # fmt: skip
        memoryview(raw)[2:], ext_hook=_ext, strict_map_key=False, use_list=True
    )
    out = {
        "version": version,
        "watermark_ms": wm,
        "wm_digests": [_digest_str(d) for d in wm_digests],
        "recent": _recent_unpack(wm, recent),
        "n_late": n_late,
        "latest": {k: [v, wm - d] for k, (v, d) in latest.items()},
        "baseline": baseline,
        "spo2_scale_device": scale,
        "n_events": n_events,
        "alert": zlib.decompress(alert).decode() if isinstance(alert, bytes) else alert,
        "model": _model_unpack(model),
    }
    if extra:
        out.update(extra)
    return out


# ---- history rows -----------------------------------------------------------------------
def _scaled(value: float, scale: float) -> float | int:
    """``value`` as the integer ``value * scale`` when that is exact, else itself."""
    if -1e15 < value < 1e15:  # finite, and its integer exact in a double
        k = round(value * scale)
        if k / scale == value:
            return k
    return value


def pack_row(
    ts_ms: int,
    vitals: Mapping[str, Any],
    news2_total: int | None,
    risk: float | None,
    late: bool,
) -> bytes | str:
    """One history row: ``[t, the eight vitals (nil where absent; a numeric one in
    hundredths when exact), NEWS2 total, risk (rounded to 4 decimals, in ten-thousandths
    when exact), late]``; a row the layout cannot hold exactly as its JSON text."""
    cells: list[Any] = [ts_ms]
    get = vitals.get
    present = 0
    for name, numeric in _ROW_SPEC:
        value = get(name)
        if value is not None:
            present += 1
            if numeric:
                if type(value) is not float:
                    return json_row(ts_ms, vitals, news2_total, risk, late)
                value = _scaled(value, 100.0)
        cells.append(value)
    if present != len(vitals):
        return json_row(ts_ms, vitals, news2_total, risk, late)  # a name the layout lacks
    cells.append(news2_total)
    cells.append(None if risk is None else _scaled(round(risk, 4), 10_000.0))
    cells.append(1 if late else 0)
    packed: bytes = msgpack.packb(cells, use_bin_type=True)
    return _ROW_HEAD + packed


def json_row(
    ts_ms: int,
    vitals: Mapping[str, Any],
    news2_total: int | None,
    risk: float | None,
    late: bool,
) -> str:
    """The JSON form of a history row (what the ring held before the binary rows)."""
    row: dict[str, Any] = {"t": ts_ms, **vitals}
    if late:
        row["late"] = 1
    if news2_total is not None:
        row["news2"] = news2_total
    if risk is not None:
        row["risk"] = round(risk, 4)
    return json.dumps(row, separators=(",", ":"))


def unpack_row(raw: bytes | str) -> dict[str, Any]:
    """A history row as a dict (``t``, the vitals present, ``late``, ``news2``,
    ``risk``), from either form."""
    if not is_binary(raw):
        return dict(json.loads(raw))
    assert isinstance(raw, bytes | bytearray | memoryview)
    if raw[1] != ROW_FORMAT:
        raise ValueError(f"history row in unknown format {raw[1]}")
    cells = msgpack.unpackb(memoryview(raw)[2:], use_list=True)
    row: dict[str, Any] = {"t": cells[0]}
    for name, value in zip(ROW_VITALS, cells[1:9], strict=True):
        if value is not None:
            if name in _NUMERIC_ROW and type(value) is int:
                value = value / 100.0
            row[name] = value
    news2, risk, late = cells[9:12]
    if late:
        row["late"] = 1
    if news2 is not None:
        row["news2"] = news2
    if risk is not None:
        row["risk"] = risk / 10_000.0 if type(risk) is int else risk
    return row
