"""The partition that owns a patient is the one Kafka's default partitioner picks, for the
producers that write patient-keyed topics here (aiokafka inside Faust for commands, the
same murmur2 as kafka-python and the Java client for vitals)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from wardwatch.topics import partition_for


@given(st.text(min_size=1, max_size=40), st.integers(min_value=1, max_value=64))
def test_partition_for_is_the_producers_default_partitioner(key: str, n: int) -> None:
    from aiokafka.partitioner import DefaultPartitioner

    partitions = list(range(n))
    assert partition_for(key, n) == DefaultPartitioner()(key.encode(), partitions, partitions)


def test_every_partition_owns_patients() -> None:
    assert {partition_for(f"p{i}", 4) for i in range(100)} == {0, 1, 2, 3}
