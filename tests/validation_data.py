"""Tiny exports for the validation tests: the YAIB hourly tables and the generic format,
each with the bad rows a real export has."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

T0 = datetime(2025, 3, 1, tzinfo=UTC)
HOURS = 25  # 0..24 h, as YAIB's mortality24 has
NAN = math.nan

# the generic vitals rows the worker dead-letters, with its reason for each
GENERIC_REJECTS = {
    "missing_patient_id": 1,
    "missing_timestamp": 1,
    "schema_violation": 3,  # a naive time, a word for a number, an unknown ACVPU code
    "no_vitals": 1,
    "impossible_value": 1,  # nothing left once the heart rate of 0 is set aside
    "future_timestamp": 1,
}
GENERIC_OUTCOME_REJECTS = {"missing_patient_id": 1, "missing_outcome_time": 1, "unknown_outcome": 1}


def _vitals(h: int, sick: bool) -> dict[str, float]:
    """Hourly vitals; a sick patient's breathing, pulse and saturation worsen after 8 h."""
    worse = max(0, h - 8) if sick else 0
    return {
        "hr": 80.0 + 3 * worse,
        "resp": 16.0 + worse,
        "o2sat": 97.0 - 0.5 * worse,
        "sbp": 124.0 - 2 * worse,
        "dbp": 72.0,
        "temp": 37.0 if h % 4 == 0 else NAN,  # charted every 4 h
        "fio2": 40.0 if sick and h >= 12 else (21.0 if h == 0 else NAN),
    }


def write_yaib(folder: Path, *, hourly: bool) -> Path:
    """Three stays over 24 h: 1 deteriorates (positive), 2 has a labs-only hour, a row
    with nothing possible left (heart rate 0, respiratory rate 0) and a respiratory rate of
    0 beside valid vitals, 3 has no vitals at all."""
    folder.mkdir(parents=True, exist_ok=True)
    cols: dict[str, list[float | int]] = {
        k: []
        for k in ("stay_id", "time", "hr", "resp", "o2sat", "sbp", "dbp", "temp", "fio2", "crea")
    }
    for stay in (1, 2, 3):
        for h in range(HOURS):
            v = _vitals(h, sick=stay == 1)
            if stay == 3 or (stay == 2 and h == 5):
                v = dict.fromkeys(v, NAN)
            if stay == 2 and h == 6:
                v = {**dict.fromkeys(v, NAN), "hr": 0.0, "resp": 0.0}
            if stay == 2 and h == 7:
                v["resp"] = 0.0
            cols["stay_id"].append(stay)
            cols["time"].append(h * 3600)
            for k, x in v.items():
                cols[k].append(x)
            cols["crea"].append(1.1 if h % 12 == 0 else NAN)
    dyn = pa.table(
        {
            "stay_id": pa.array(cols["stay_id"], pa.int32()),
            "time": pa.array(cols["time"], pa.duration("s")),
            **{k: pa.array(cols[k], pa.float64()) for k in cols if k not in ("stay_id", "time")},
        }
    )
    pq.write_table(dyn, folder / "dyn.parquet")
    if hourly:
        outc = pa.table(
            {
                "stay_id": pa.array([s for s in (1, 2, 3) for _ in range(HOURS)], pa.int32()),
                "time": pa.array(
                    [h * 3600 for _ in (1, 2, 3) for h in range(HOURS)], pa.duration("s")
                ),
                "label": pa.array([s == 1 and h >= 12 for s in (1, 2, 3) for h in range(HOURS)]),
            }
        )
    else:
        outc = pa.table(
            {"stay_id": pa.array([1, 2, 3], pa.int32()), "label": pa.array([1, 0, 0], pa.int32())}
        )
    pq.write_table(outc, folder / "outc.parquet")
    sta = pa.table({"stay_id": pa.array([1, 2, 3], pa.int32()), "age": [70.5, 30.0, 85.0]})
    pq.write_table(sta, folder / "sta.parquet")
    return folder


GENERIC_HEADER = (
    "patient_id,time,heart_rate_bpm,respiratory_rate_per_min,spo2_pct,systolic_bp_mmhg,"
    "diastolic_bp_mmhg,temperature_c,on_oxygen,consciousness,ward"
)


def _iso(h: float) -> str:
    return (T0 + timedelta(hours=h)).isoformat().replace("+00:00", "Z")


def _epoch(h: float) -> str:
    return f"{(T0 + timedelta(hours=h)).timestamp():.0f}"


def write_generic(folder: Path) -> Path:
    """p-001 deteriorates (death at 20 h), p-002 is stable (times as epoch seconds),
    p-003 has no outcome row; plus the rows of ``GENERIC_REJECTS``, one reading set aside
    beside valid ones, an inconsistent pressure pair and an extreme SpO2."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = [GENERIC_HEADER]
    for h in range(24):
        v = _vitals(h, sick=True)
        oxygen = "yes" if h >= 12 else "no"
        acvpu = "C" if h >= 16 else "A"
        rows.append(
            f"p-001,{_iso(h)},{v['hr']},{v['resp']},{v['o2sat']},{v['sbp']},{v['dbp']},"
            f"{'' if math.isnan(v['temp']) else v['temp']},{oxygen},{acvpu},4B"
        )
    for h in range(24):
        v = _vitals(h, sick=False)
        resp = "0" if h == 3 else v["resp"]  # set aside, the rest scored
        sbp, dbp = ("60", "70") if h == 4 else (v["sbp"], v["dbp"])  # inconsistent
        spo2 = "55" if h == 5 else v["o2sat"]  # extreme: scored, to verify
        rows.append(f"p-002,{_epoch(h)},{v['hr']},{resp},{spo2},{sbp},{dbp},37.0,false,A,4B")
    for h in range(0, 24, 4):
        rows.append(f"p-003,{_iso(h + 0.5)},72,14,98,130,80,36.8,0,A,4C")
    rows += [
        f",{_iso(2)},80,16,97,120,70,37,no,A,4B",  # missing_patient_id
        "p-002,,80,16,97,120,70,37,no,A,4B",  # missing_timestamp
        "p-002,2025-03-01T06:30:00,80,16,97,120,70,37,no,A,4B",  # naive: schema_violation
        f"p-002,{_iso(7.5)},abc,16,97,120,70,37,no,A,4B",  # schema_violation
        f"p-002,{_iso(8.5)},80,16,97,120,70,37,no,X,4B",  # schema_violation
        f"p-002,{_iso(9.5)},,,,,,,,,4B",  # no_vitals
        f"p-002,{_iso(10.5)},0,,,,,,,,4B",  # impossible_value
        "p-002,2999-01-01T00:00:00Z,80,16,97,120,70,37,no,A,4B",  # future_timestamp
    ]
    (folder / "vitals.csv").write_text("\n".join(rows) + "\n")
    (folder / "outcomes.csv").write_text(
        "patient_id,outcome_time,outcome\n"
        f"p-001,{_iso(20)},death\n"
        "p-002,,none\n"
        f",{_iso(3)},death\n"  # missing_patient_id
        "p-004,,1\n"  # missing_outcome_time
        f"p-005,{_iso(3)},maybe\n"  # unknown_outcome
    )
    return folder


def write_generic_parquet(folder: Path) -> Path:
    """The valid rows of p-001 and p-002 as typed Parquet columns, plus a row with no
    vitals (every value null)."""
    folder.mkdir(parents=True, exist_ok=True)
    pids, times, hr, resp, oxygen, acvpu = [], [], [], [], [], []
    for pid, sick in (("p-001", True), ("p-002", False)):
        for h in range(24):
            v = _vitals(h, sick)
            pids.append(pid)
            times.append(T0 + timedelta(hours=h))
            hr.append(v["hr"])
            resp.append(v["resp"])
            oxygen.append(sick and h >= 12)
            acvpu.append("A")
    pids.append("p-002")
    times.append(T0 + timedelta(hours=30))
    hr.append(None)
    resp.append(None)
    oxygen.append(None)
    acvpu.append(None)
    table = pa.table(
        {
            "patient_id": pids,
            "time": pa.array(times, pa.timestamp("s", tz="UTC")),
            "heart_rate_bpm": pa.array(hr, pa.float64()),
            "respiratory_rate_per_min": pa.array(resp, pa.float64()),
            "on_oxygen": pa.array(oxygen, pa.bool_()),
            "consciousness": pa.array(acvpu, pa.string()),
        }
    )
    pq.write_table(table, folder / "vitals.parquet")
    outcomes = pa.table(
        {
            "patient_id": ["p-001", "p-002"],
            "outcome_time": pa.array([T0 + timedelta(hours=20), None], pa.timestamp("s", tz="UTC")),
            "outcome": ["icu_transfer", "none"],
        }
    )
    pq.write_table(outcomes, folder / "outcomes.parquet")
    return folder
