from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from httpsync.controller.metrics import Metrics


def test_forget_mapping_drops_its_series_and_keeps_others() -> None:
    m = Metrics(CollectorRegistry())
    for name in ("gone", "kept"):
        m.entities_upserted.labels("ns", name).inc(3)
        m.items_fetched.labels("ns", name).inc(5)
        m.last_success.labels("ns", name).set(1)
    m.forget_mapping("ns", "gone")
    m.forget_mapping("ns", "gone")  # twice is harmless
    text = generate_latest(m.registry).decode()
    assert 'mapping="gone"' not in text
    assert 'httpsync_entities_upserted_total{mapping="kept",namespace="ns"} 3.0' in text
