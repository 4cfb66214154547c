from __future__ import annotations

import time

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from httpsync.controller.metrics import UNSHARDED, Metrics


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


def _value(m: Metrics, name: str, **labels: str) -> float | None:
    return m.registry.get_sample_value(name, labels)


def test_sync_slot_counts_in_flight_and_observes_wait_and_drift() -> None:
    m = Metrics(CollectorRegistry())
    now = time.time()
    with m.sync_slot(queued_at=now - 3, due_at=now - 10):
        assert _value(m, "httpsync_syncs_in_flight") == 1
        with m.sync_slot(queued_at=now + 60):  # on demand: no drift; a clock step: no negative wait
            assert _value(m, "httpsync_syncs_in_flight") == 2
    assert _value(m, "httpsync_syncs_in_flight") == 0
    assert _value(m, "httpsync_sync_queue_wait_seconds_count") == 2
    assert _value(m, "httpsync_sync_queue_wait_seconds_bucket", le="2.0") == 1  # the second waited 0s
    assert _value(m, "httpsync_sync_queue_wait_seconds_bucket", le="5.0") == 2
    assert _value(m, "httpsync_schedule_drift_seconds_count") == 1
    assert _value(m, "httpsync_schedule_drift_seconds_bucket", le="5.0") == 0
    assert _value(m, "httpsync_schedule_drift_seconds_bucket", le="10.0") == 0  # 10 s and a little
    assert _value(m, "httpsync_schedule_drift_seconds_bucket", le="30.0") == 1
    with pytest.raises(RuntimeError), m.sync_slot(queued_at=now):
        raise RuntimeError("a failed sync frees its slot")
    assert _value(m, "httpsync_syncs_in_flight") == 0


def test_source_state_and_suspended_sources() -> None:
    m = Metrics(CollectorRegistry())
    m.source_state("ns", "api", ready=False, since=1000.0, interval=60)
    m.drift("ns", "api", 2.5)
    assert _value(m, "httpsync_source_ready", namespace="ns", source="api") == 0
    assert _value(m, "httpsync_source_ready_last_transition_timestamp_seconds", namespace="ns", source="api") == 1000
    assert _value(m, "httpsync_source_interval_seconds", namespace="ns", source="api") == 60
    assert _value(m, "httpsync_schedule_drift_last_seconds", namespace="ns", source="api") == 2.5
    m.source_state("ns", "api", ready=True, since=2000.0, interval=60)
    assert _value(m, "httpsync_source_ready", namespace="ns", source="api") == 1
    # Suspended: no series, so the alerts say nothing about it.
    m.source_state("ns", "api", ready=False, since=3000.0, interval=None)
    assert "source=" not in generate_latest(m.registry).decode()
    m.forget_source("ns", "api")  # twice is harmless


def test_sync_result_counts_guard_trips_and_sink_errors() -> None:
    m = Metrics(CollectorRegistry())
    m.sync_result("ns", "users", deletion_blocked=False, sink_errors=0)
    assert _value(m, "httpsync_deletion_guard_trips_total", namespace="ns", mapping="users") == 0  # exists at 0
    m.sync_result("ns", "users", deletion_blocked=True, sink_errors=3)
    m.sync_result("ns", "users", deletion_blocked=False, sink_errors=1)
    assert _value(m, "httpsync_deletion_guard_trips_total", namespace="ns", mapping="users") == 1
    assert _value(m, "httpsync_sink_errors_total", namespace="ns", mapping="users") == 4
    m.mapping_interval.labels("ns", "users").set(60)
    m.forget_mapping("ns", "users")
    assert 'mapping="users"' not in generate_latest(m.registry).decode()


def test_shard_objects() -> None:
    m = Metrics(CollectorRegistry())
    m.shard_objects.labels(UNSHARDED, "HttpSource").set(3)
    m.shard_objects.labels("a", "HttpEndpointMapping").set(7)
    assert _value(m, "httpsync_shard_objects", shard="(none)", kind="HttpSource") == 3
    assert _value(m, "httpsync_shard_objects", shard="a", kind="HttpEndpointMapping") == 7
