"""Hostile input for the fault suite: malformed, truncated, oversized, wrong-typed,
wrong-encoding and otherwise hostile messages, generated deterministically.

:func:`hostile_messages` draws the list from a seeded :class:`random.Random`: the same
seed and the same ``anchor`` give the same messages, byte for byte. Every message says
what must become of it:

* ``patient is None``: dead-lettered (by the decoder, or as ``too_late`` by the
  pipeline: ``after`` then names the scenario patient whose first event it must follow
  in the log, so that the patient's newest event is already more than the late window
  ahead of it);
* ``patient`` set: a valid event of a patient of its own (never a scenario patient), with
  normal vitals, stamped a day or more before ``anchor`` (so it moves no partition's
  event time past the scenario's), scored once: in place when its key is its patient,
  re-keyed to its patient's partition otherwise.

A message that names a scenario patient is always one that is certain to be
dead-lettered, whatever else is in the log.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from simulator.cohort import simulate_cohort
from simulator.profiles import SimConfig

OVERSIZED_BYTES = 900 * 1024
"""The size of the oversized messages (the producer's and broker's limit is 1 MiB)."""


@dataclass(frozen=True)
class Hostile:
    key: str | None  # the message key (None: unkeyed)
    value: bytes
    kind: str
    patient: str | None = None  # the patient it is scored for; None: dead-lettered
    after: str | None = None  # a scenario patient whose first event it must follow


STABLE: dict[str, Any] = {
    "heart_rate_bpm": 74.0,
    "respiratory_rate_per_min": 15.0,
    "spo2_pct": 97.0,
    "on_oxygen": False,
    "systolic_bp_mmhg": 124.0,
    "diastolic_bp_mmhg": 78.0,
    "temperature_c": 36.8,
    "consciousness": "A",
}


def _iso(ts: datetime) -> str:
    return ts.isoformat()


class _Gen:
    def __init__(self, rng: random.Random, patients: Sequence[str], anchor: datetime) -> None:
        self.rng = rng
        self.patients = list(patients)
        self.anchor = anchor
        self.n_fresh = 0
        start = datetime(2001, 3, 1, tzinfo=UTC)  # real-looking events, fixed in time
        cohort = simulate_cohort(8, seed=5, start=start, config=SimConfig(hours=2))
        self.real = [json.dumps(e, default=datetime.isoformat).encode() for e in cohort.events]

    # --- helpers -----------------------------------------------------------------------

    def key(self) -> str | None:
        """A random key: often a scenario patient's (to share its partition)."""
        r = self.rng.random()
        if r < 0.5:
            return self.rng.choice(self.patients)
        if r < 0.95:
            return f"k-{self.rng.randrange(10**6)}"
        return "" if r < 0.98 else None

    def old_ts(self) -> str:
        """A day or two before the scenario: moves no partition's clock."""
        return _iso(self.anchor - timedelta(days=1, seconds=self.rng.randrange(86400)))

    def fresh(self, stem: str = "hx") -> str:
        self.n_fresh += 1
        return f"{stem}-{self.n_fresh:05d}"

    def event(self, pid: str, **changes: Any) -> dict[str, Any]:
        e: dict[str, Any] = {"patient_id": pid, "ts": self.old_ts(), **STABLE}
        for k, v in changes.items():
            if v is _DROP:
                e.pop(k, None)
            else:
                e[k] = v
        return e

    def dead_pid(self) -> str:
        """A patient id for a message certain to be dead-lettered: often a scenario one."""
        return self.rng.choice(self.patients) if self.rng.random() < 0.7 else self.fresh("hd")

    def dead(self, kind: str, value: bytes, key: str | None = None) -> Hostile:
        return Hostile(self.key() if key is None else key, value, kind)

    def valid(self, kind: str, pid: str, value: bytes | None = None) -> Hostile:
        """A valid event of ``pid`` (its own patient): keyed by it, or re-keyed."""
        value = value if value is not None else _dumps(self.event(pid))
        key = pid if self.rng.random() < 0.6 else self.key()
        return Hostile(key, value, kind, patient=pid)

    # --- kinds -------------------------------------------------------------------------

    def truncated(self) -> Hostile:
        raw = self.rng.choice(self.real)
        return self.dead("truncated", raw[: self.rng.randrange(len(raw))])

    def random_bytes(self) -> Hostile:
        n = self.rng.choice([1, 2, 7, 64, 300, 1500, 4000])
        value = self.rng.randbytes(n)
        if self.rng.random() < 0.3:  # bytes after an opening brace
            value = b'{"' + value
        return self.dead("random_bytes", value)

    def encoding(self) -> Hostile:
        pid = self.dead_pid()
        e = self.event(pid, device_id="Überwachung-µ-é")
        text = json.dumps(e, ensure_ascii=False)
        how = self.rng.randrange(6)
        if how == 0:
            value = text.encode("utf-16")
        elif how == 1:
            value = text.encode("utf-16-le")
        elif how == 2:
            value = text.encode("utf-32")
        elif how == 3:
            value = text.encode("latin-1")
        elif how == 4:  # invalid UTF-8 sequences inside a string
            bad = self.rng.choice([b"\xc3\x28", b"\xed\xa0\x80", b"\xc0\xaf", b"\xff\xfe", b"\x80"])
            value = json.dumps(e).encode().replace(b'"ts"', b'"t' + bad + b's"', 1)
            value = value.replace(b"bedside", b"bed" + bad, 1)
        else:  # cp1252 smart quotes around the keys
            value = text.replace('"', "\u201c", 4).encode("cp1252", "replace")
        return Hostile(self.key(), value, "encoding")

    def not_object(self) -> Hostile:
        pid = self.dead_pid()
        e = self.event(pid)
        options: list[Callable[[], bytes]] = [
            lambda: _dumps([e]),
            lambda: _dumps([e, e]),
            lambda: b"[]",
            lambda: b"null",
            lambda: b"true",
            lambda: str(self.rng.randrange(-(10**9), 10**9)).encode(),
            lambda: b"1e308",
            lambda: b"-0.0",
            lambda: _dumps(json.dumps(e)),  # an event as a JSON string
            lambda: _dumps(pid),
            lambda: b'""',
            lambda: b"   ",
            lambda: b"",
            lambda: b"\n\t\r",
        ]
        return self.dead("not_an_object", self.rng.choice(options)())

    def fields(self) -> Hostile:
        """Missing, extra and wrong-typed fields: dead-lettered. A number out of its
        vital's possible range, or systolic <= diastolic, beside the other (normal) vitals
        is set aside and the rest scored: such a message is a valid event of a patient of
        its own."""
        pid = self.dead_pid()
        num = self.rng.choice(
            ["heart_rate_bpm", "respiratory_rate_per_min", "spo2_pct", "systolic_bp_mmhg"]
            + ["diastolic_bp_mmhg", "temperature_c"]
        )
        bad_number: list[Any] = [
            "97",
            "ninety",
            {"value": 97},
            [97],
            True,
            False,
            -1.0,
            -(10**30),
            1e308,
            10**400,
            0.0,
            1e-300,
        ]
        bad_number.append(-self.rng.uniform(0.1, 500))
        r = self.rng.randrange(14)
        literal: bytes | None = None
        aside = False  # a reading set aside, the rest of the event scored
        if r == 0:
            e = self.event(pid, patient_id=_DROP)
        elif r == 1:
            e = self.event(pid, ts=_DROP)
        elif r == 2:
            e = self.event(pid, **{f"extra_{self.rng.randrange(99)}": 1})
        elif r == 3:
            bad = self.rng.choice(bad_number)
            e = self.event(pid, **{num: bad})
            aside = isinstance(bad, int | float) and not isinstance(bad, bool)
        elif r == 4:
            e = self.event(pid, patient_id=self.rng.choice([None, 7, [pid], {"id": pid}, True]))
        elif r == 5:
            e = self.event(pid, on_oxygen=self.rng.choice(["yes", 1, "false", "no", {}]))
        elif r == 6:
            e = self.event(pid, consciousness=self.rng.choice(["X", "a", "alert", 1, ["A"], ""]))
        elif r == 7:
            e = self.event(pid, spo2_scale=self.rng.choice([0, 3, "1", 1.5, True]))
        elif r == 8:  # NaN / Infinity literals (not JSON)
            e = self.event(pid)
            lit = self.rng.choice([b"NaN", b"Infinity", b"-Infinity", b"nan", b"inf"])
            literal = _dumps({**e, num: "@@"}).replace(b'"@@"', lit)
        elif r == 9:  # every vital absent
            e = {"patient_id": pid, "ts": self.old_ts()}
            if self.rng.random() < 0.5:
                e["device_id"] = "bedside-1"
        elif r == 10:  # a vital far out of range
            e = self.event(pid, **{num: self.rng.choice([0.0, 1000.0, 1e308, -40.0, 5e6])})
            aside = True
        elif r == 11:  # inconsistent blood pressure
            e = self.event(pid, systolic_bp_mmhg=80.0, diastolic_bp_mmhg=95.0)
            aside = True
        elif r == 12:  # blank or whitespace patient ids
            e = self.event(pid, patient_id=self.rng.choice(["", " ", "\t", "\n", "   "]))
        else:  # device id too long, or wrong-typed
            e = self.event(pid, device_id=self.rng.choice(["d" * 129, 5, {"x": 1}]))
        if aside:  # scored without the reading: never a scenario patient's event
            own = self.fresh("hs")
            return self.valid("set_aside", own, _dumps({**e, "patient_id": own}))
        return self.dead("fields", literal if literal is not None else _dumps(e))

    def timestamps(self) -> Hostile:
        pid = self.dead_pid()
        r = self.rng.randrange(9)
        if r == 8:  # too old for a scenario patient, after its first event: too_late
            pid = self.rng.choice(self.patients)
            ts = self.anchor - timedelta(hours=self.rng.uniform(3, 30))
            return Hostile(pid, _dumps(self.event(pid, ts=_iso(ts))), "too_late", after=pid)
        ts_value: Any = [
            "0001-01-01T00:00:00Z",
            "9999-12-31T23:59:59Z",
            "2999-06-01T00:00:00+00:00",
            "1969-12-31T23:59:59Z",
            "2020-01-01T00:00:00",  # naive
            self.rng.choice(["yesterday", "", "2021-13-45T25:61:00Z", "2021-02-30T00:00:00Z"]),
            self.rng.choice([1_700_000_000, 1.7e12, True, {"$date": "2021"}, ["2021-01-01"]]),
            "1900-01-01T00:00:00+14:00",
        ][r]
        return self.dead("timestamp", _dumps(self.event(pid, ts=ts_value)))

    def oversized(self) -> Hostile:
        """Messages of about 900 KB: one valid (padded with whitespace), the rest not."""
        r = self.rng.randrange(4)
        if r == 0:
            pid = self.fresh("hbig")
            body = _dumps(self.event(pid))
            pad = b" " * (OVERSIZED_BYTES - len(body))
            return self.valid("oversized_valid", pid, body[:-1] + pad + b"}")
        pid = self.dead_pid()
        if r == 1:
            e = self.event(pid, device_id="x" * OVERSIZED_BYTES)
            return self.dead("oversized", _dumps(e))
        if r == 2:
            return self.dead("oversized", self.rng.randbytes(OVERSIZED_BYTES))
        items = [self.event(pid) for _ in range(OVERSIZED_BYTES // 260)]
        return self.dead("oversized", _dumps({"resourceType": "Bundle", "entry": items}))

    def nested(self) -> Hostile:
        depth = self.rng.choice([50, 300, 1000, 20_000])
        pid = self.dead_pid()
        r = self.rng.randrange(3)
        if r == 0:
            value = b"[" * depth + b"]" * depth
        elif r == 1:
            inner = b'{"a":' * depth + b"1" + b"}" * depth
            value = _dumps(self.event(pid, device_id="@@")).replace(b'"@@"', inner)
        else:  # Bundles in Bundles
            body = _dumps(self.event(pid))
            for _ in range(min(depth, 400)):
                body = b'{"resourceType":"Bundle","type":"collection","entry":[{"resource":' + body
                body += b"}]}"
            value = body
        return self.dead("nested", value)

    def patient_ids(self) -> Hostile:
        """Odd patient ids: too long (dead), or valid ones of their own (scored)."""
        r = self.rng.randrange(3)
        if r == 0:
            n = self.rng.choice([129, 200, 5000, 60_000])
            stem = self.rng.choice(self.patients)
            pid = (stem * (n // len(stem) + 1))[:n]
            return self.dead("long_patient_id", _dumps(self.event(pid)), key=pid)
        self.n_fresh += 1
        n = self.n_fresh
        odd = [
            f"hc-{n}\x00nul",
            f"hc-{n}\n\r\x1b[31m",
            f"{{hc-{n}}}",
            f"%7Bhc-{n}%7D",
            f"hc-{n}}}{{",
            f"hc:{n}:{{x}}",
            f"患者-{n}",
            f"hc-{n}-\U0001f6d1\u200b\u202e",
            f"hc-{n} ",
            f" hc-{n}",
            f"hc-{n}\\u0000",
            f"hc-{n}" + "\u00e9" * 40,
            (f"hc-{n}-" + "z" * 128)[:128],
            f"hc-{n}'\";DROP TABLE--",
            f"hc-{n}*?[a-z]",
        ]
        pid = odd[self.rng.randrange(len(odd))]
        return self.valid("odd_patient_id", pid)

    def rekeyed(self) -> Hostile:
        """Valid events of their own patients under other keys (re-keyed by the product)."""
        pid = self.fresh("hr")
        changes: dict[str, Any] = {}
        if self.rng.random() < 0.3:  # integers for numbers (JSON has one number type)
            changes = {"heart_rate_bpm": 70, "spo2_pct": 98}
        if self.rng.random() < 0.3:
            changes["ts"] = (self.anchor - timedelta(days=1, hours=1)).strftime(
                "%Y-%m-%dT%H:%M:%S.%f+05:30"
            )
        value = _dumps(self.event(pid, **changes))
        return Hostile(self.rng.choice(self.patients + ["", "k-x"]), value, "rekeyed", patient=pid)

    def fhir(self) -> Hostile:
        pid = self.dead_pid()
        ts = self.old_ts()
        subject = {"reference": f"Patient/{pid}"}
        code = {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]}
        broken: list[dict[str, Any]] = [
            {"resourceType": "Observation"},
            {"resourceType": "Observation", "status": "final", "code": code, "subject": subject},
            {
                "resourceType": "Observation",
                "status": "final",
                "code": code,
                "subject": subject,
                "effectiveDateTime": ts,
                "valueQuantity": {"value": "fast", "unit": "/min"},
            },
            {
                "resourceType": "Observation",
                "status": "final",
                "code": code,
                "subject": subject,
                "effectiveDateTime": ts,
                "valueQuantity": {"value": 72, "unit": "furlongs"},
            },
            {
                "resourceType": "Observation",
                "status": "final",
                "code": {"coding": "8867-4"},
                "subject": subject,
                "effectiveDateTime": ts,
                "valueQuantity": {"value": 72},
            },
            {
                "resourceType": "Observation",
                "status": "final",
                "code": code,
                "subject": pid,
                "effectiveDateTime": ts,
                "valueQuantity": {"value": 72, "unit": "/min"},
            },
            {"resourceType": "Bundle", "type": "collection", "entry": "nope"},
            {"resourceType": "Bundle", "type": "collection", "entry": [None, 1, "x"]},
            {"resourceType": "Bundle", "type": "collection", "entry": []},
            {"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "Patient"}}]},
            {"resourceType": "Observation ", "subject": subject},
            {"resourceType": 42},
            {"resourceType": None},
            {"resourceType": "observation", "subject": subject},
            {"resourceType": ["Observation"]},
        ]
        return self.dead("fhir", _dumps(self.rng.choice(broken)))

    def hl7(self) -> Hostile:
        pid = self.dead_pid()
        segs = [
            f"MSH|^~\\&|MONITOR|WARD7|WW|HOSP|20240101120000||ORU^R01|{self.rng.randrange(10**6)}|P|2.5",
            f"PID|1||{pid}^^^HOSP^MR||DOE^JOHN",
            "OBR|1|||8867-4^Heart rate^LN",
            f"OBX|1|NM|8867-4^Heart rate^LN||{self.rng.randrange(40, 160)}|/min|||||F",
            "OBX|2|NM|59408-5^SpO2^LN||97|%|||||F",
        ]
        sep = self.rng.choice(["\r", "\n", "\r\n"])
        value = sep.join(segs[: self.rng.randrange(1, len(segs) + 1)]).encode()
        if self.rng.random() < 0.2:
            value = b"\x0b" + value + b"\x1c\r"  # MLLP framing
        return self.dead("hl7", value)

    def duplicate_keys(self) -> Hostile:
        """A JSON object naming two fresh patients (duplicate keys): valid for one of them
        at most (which is the decoder's business); the accounting follows the decoder."""
        a, b = self.fresh("hdup"), self.fresh("hdup")
        value = _dumps(self.event(a))[:-1] + b', "patient_id": ' + _dumps(b) + b"}"
        return Hostile(self.rng.choice([a, b]), value, "duplicate_keys", patient=b)


_DROP = object()


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj).encode()


KINDS: dict[str, float] = {
    "truncated": 0.14,
    "random_bytes": 0.10,
    "encoding": 0.10,
    "not_object": 0.08,
    "fields": 0.16,
    "timestamps": 0.10,
    "nested": 0.03,
    "patient_ids": 0.08,
    "rekeyed": 0.06,
    "fhir": 0.08,
    "hl7": 0.05,
    "duplicate_keys": 0.02,
}


def hostile_messages(
    patients: Sequence[str], anchor: datetime, n: int = 10_000, seed: int = 1337, oversized: int = 8
) -> list[Hostile]:
    """``n`` hostile messages (``oversized`` of them about 900 KB), the same for the same
    arguments. ``patients`` are the scenario's, ``anchor`` its first event time."""
    rng = random.Random(seed)
    gen = _Gen(rng, sorted(patients), anchor)
    names, weights = list(KINDS), list(KINDS.values())
    out = [gen.oversized() for _ in range(oversized)]
    while len(out) < n:
        kind = rng.choices(names, weights)[0]
        out.append(getattr(gen, kind)())
    rng.shuffle(out)
    return out


def interleave(
    scenario: Sequence[tuple[str, bytes]], hostile: Sequence[Hostile], seed: int = 1337
) -> list[tuple[str | None, bytes, Hostile | None]]:
    """The scenario's messages in their order with the hostile ones spread among them at
    random (seeded) places; a ``too_late`` one only after its patient's first event."""
    rng = random.Random(seed)
    first: dict[str, int] = {}
    for i, (key, _) in enumerate(scenario):
        first.setdefault(key, i)
    slots: list[list[Hostile]] = [[] for _ in range(len(scenario) + 1)]
    for m in hostile:
        low = first[m.after] + 1 if m.after is not None else 0
        slots[rng.randrange(low, len(scenario) + 1)].append(m)
    out: list[tuple[str | None, bytes, Hostile | None]] = []
    for i in range(len(scenario) + 1):
        out.extend((m.key, m.value, m) for m in slots[i])
        if i < len(scenario):
            out.append((scenario[i][0], scenario[i][1], None))
    return out
