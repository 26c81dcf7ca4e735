"""The worker's vitals hand-off (``agents.app.BatchIntake``) on the real broker and Redis:
batches of at most ``WARDWATCH_BATCH_SIZE``, every record's offset committed once it is
scored, so a restarted worker of the same group reads nothing again."""

from __future__ import annotations

from pathlib import Path

from cli.demo_workers import metric_sum
from tests.integration.helpers import hours_ago, publish, stable, start_worker, wait_for
from wardwatch.settings import Settings
from wardwatch.topics import admin_client, ensure_topics


def _committed(settings: Settings) -> int:
    admin = admin_client(settings)
    try:
        offsets = admin.list_group_offsets(settings.app_id).get(settings.app_id, {})
    finally:
        admin.close()
    return sum(meta.offset for tp, meta in offsets.items() if tp.topic == settings.topics.vitals)


def test_scored_batches_are_committed_and_not_read_again(
    settings: Settings, tmp_path: Path
) -> None:
    s = settings.model_copy(update={"batch_size": 16})
    ensure_topics(s)
    start = hours_ago(6)
    patients = [f"bi{i:02d}" for i in range(20)]
    items = [(pid, v) for pid in patients for v in stable(pid, start, steps=10)]
    sent = publish(s, s.topics.vitals, items)
    w1 = start_worker(s, tmp_path, "w1")
    try:
        wait_for(
            lambda: metric_sum(w1.metrics(), "wardwatch_events_scored_total") >= sent,
            90,
            "every event scored",
        )
        wait_for(lambda: _committed(s) >= sent, 30, "every offset committed")
        m1 = w1.metrics()
    finally:
        w1.stop()
    assert metric_sum(m1, "wardwatch_batch_size_count") >= sent / 16
    assert metric_sum(m1, "wardwatch_batch_size_sum") == sent  # each record in exactly one batch
    assert _committed(s) == sent
    w2 = start_worker(s, tmp_path, "w2")  # the same group: only what comes next is read
    try:
        one = publish(s, s.topics.vitals, [(patients[0], stable(patients[0], hours_ago(1), 1)[0])])
        wait_for(
            lambda: metric_sum(w2.metrics(), "wardwatch_events_scored_total") >= one,
            60,
            "the new event scored",
        )
        m2 = w2.metrics()
    finally:
        w2.stop()
    assert metric_sum(m2, "wardwatch_events_consumed_total") == one
