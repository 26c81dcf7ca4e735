from __future__ import annotations

import json
import logging

from wardwatch.logs import JsonFormatter, patient_ref


def test_patient_ref_is_stable_keyed_and_hides_the_id() -> None:
    a = patient_ref("MRN-0012345", "k1")
    assert a == patient_ref("MRN-0012345", "k1")
    assert a != patient_ref("MRN-0012345", "k2") and a != patient_ref("MRN-0012346", "k1")
    assert "0012345" not in a and len(a) == 12


def test_json_formatter_emits_one_object_with_extras() -> None:
    rec = logging.LogRecord(
        "wardwatch.worker", logging.WARNING, "f.py", 1, "dead-lettered %s", ("x",), None
    )
    rec.patient_ref = patient_ref("p1", "k")
    out = json.loads(JsonFormatter().format(rec))
    assert out["level"] == "warning" and out["msg"] == "dead-lettered x"
    assert out["patient_ref"] == patient_ref("p1", "k") and "p1" not in json.dumps(out)


def test_patient_ref_is_truncated_hmac_sha256() -> None:
    import hashlib
    import hmac

    want = hmac.new(b"secret-key", b"sim-00001", hashlib.sha256).hexdigest()[:12]
    assert patient_ref("sim-00001", "secret-key") == want
