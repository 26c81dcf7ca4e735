"""The bench's latency quantiles: Prometheus' histogram_quantile on cumulative buckets,
and the exact quantile of a list."""

from __future__ import annotations

import pytest

from benchmarks.e2e import bucket_quantile, exact_quantile

INF = float("inf")


def test_bucket_quantile_interpolates_within_the_bucket() -> None:
    buckets = {0.01: 0.0, 0.02: 50.0, 0.05: 100.0, INF: 100.0}  # 50 in 10-20 ms, 50 in 20-50
    assert bucket_quantile(buckets, 0.5) == pytest.approx(0.02)
    assert bucket_quantile(buckets, 0.25) == pytest.approx(0.015)
    assert bucket_quantile(buckets, 0.99) == pytest.approx(0.02 + 0.03 * 49 / 50)


def test_bucket_quantile_in_the_open_bucket_is_its_lower_bound() -> None:
    assert bucket_quantile({0.05: 10.0, INF: 100.0}, 0.99) == 0.05


def test_bucket_quantile_of_nothing_is_none() -> None:
    assert bucket_quantile({0.05: 0.0, INF: 0.0}, 0.5) is None
    assert bucket_quantile({}, 0.5) is None


def test_exact_quantile() -> None:
    values = [float(v) for v in range(1, 101)]
    assert exact_quantile(values, 0.5) == 51.0
    assert exact_quantile(values, 0.99) == 100.0
    assert exact_quantile([], 0.5) is None
