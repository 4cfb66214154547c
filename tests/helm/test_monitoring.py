"""The chart's alerts (PrometheusRule) and Grafana dashboard (ConfigMap): off by default, and every PromQL
expression in them checked by the real Prometheus parser, not only their shape.

``promql`` (hack/promql) is built from Go modules with the control plane (``build_binaries()``), beside helm: it wraps
github.com/prometheus/prometheus's query parser and its rules-file checker (``rulefmt.Parse``, what
``promtool check rules`` runs), and its query engine on series loaded as ``promtool test rules`` loads them, so each
alert is shown to fire when it should and not before. Each metric an expression names must be one
httpsync.controller.metrics defines.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.metrics import MetricWrapperBase

from httpsync.controller.metrics import Metrics
from httpsync.devcluster.cluster import ControlPlaneError, build_binaries
from tests.helm.test_chart import CHART, MONITORING, RELEASE, of_kind, one, render

ALERTS = {"HttpSyncSourceNotReady", "HttpSyncMappingStale", "HttpSyncDeletionGuardTripped", "HttpSyncSinkErrors"}
ON = {"prometheusRule": {"enabled": True}, "grafanaDashboard": {"enabled": True}}
# Grafana's variables, as a query would be sent: durations in range selectors, regexes in label matchers.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "6h", "$namespace": ".*"}


@pytest.fixture(scope="session")
def bin_dir() -> Path:
    """The control plane's folder, with helm and promql."""
    try:
        folder = build_binaries(quiet=True)
    except ControlPlaneError as e:
        pytest.fail(f"helm and promql are built with the control plane and could not be had: {e}", pytrace=False)
    for tool in ("helm", "promql"):
        if not (folder / tool).exists():
            pytest.fail(
                f"{folder / tool} is missing: run `bash operator/httpsync/devcluster/build-control-plane.sh`",
                pytrace=False,
            )
    return folder


@pytest.fixture(scope="session")
def helm(bin_dir: Path) -> Path:
    return bin_dir / "helm"


@pytest.fixture(scope="session")
def promql(bin_dir: Path) -> Path:
    return bin_dir / "promql"


def _run(promql: Path, stdin: str, *args: str) -> Any:
    proc = subprocess.run([str(promql), *args], input=stdin, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def parse(promql: Path, exprs: dict[str, str]) -> dict[str, dict[str, Any]]:
    """name -> {"error", "metrics", "type"} for each expression."""
    out = _run(promql, json.dumps([{"name": n, "expr": e} for n, e in exprs.items()]))
    return {r["name"]: r for r in out}


def check_rules(promql: Path, spec: dict[str, Any]) -> dict[str, Any]:
    return _run(promql, yaml.safe_dump(spec), "rules")


def evaluate(promql: Path, load: str, queries: dict[str, tuple[str, float]]) -> dict[str, list[dict[str, Any]]]:
    """name -> the instant vector the Prometheus engine computes for (expr, at seconds) on the series of ``load``
    (promqltest's load language, as promtool's rule tests use it)."""
    case = {"load": load, "queries": [{"name": n, "expr": e, "at": at} for n, (e, at) in queries.items()]}
    out = _run(promql, json.dumps(case), "eval")
    for r in out:
        assert r["error"] == "", (r["name"], r["error"])
    return {r["name"]: r["result"] for r in out}


def defined_metrics() -> set[str]:
    return Metrics(CollectorRegistry()).names()


def _rule_spec(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return one(docs, "PrometheusRule")["spec"]


def _dashboard(docs: list[dict[str, Any]]) -> dict[str, Any]:
    cm = one(docs, "ConfigMap")
    (text,) = cm["data"].values()
    return json.loads(text)


def dashboard_exprs(dash: dict[str, Any]) -> dict[str, str]:
    """Every query of the dashboard, Grafana's variables replaced: the panels' targets and the variables'
    label_values(<selector>, label) selectors."""
    exprs: dict[str, str] = {}
    for panel in dash["panels"]:
        for t in panel.get("targets", []):
            exprs[f"panel {panel['id']} ({panel['title']}) {t['refId']}"] = t["expr"]
    for var in dash["templating"]["list"]:
        if var["type"] == "query":
            query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", query)
            assert m, f"variable {var['name']}: not a label_values() query: {query}"
            exprs[f"variable {var['name']}"] = m.group(1)
    for name, expr in exprs.items():
        for var, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(var, value)
        assert "$" not in expr, f"{name}: a Grafana variable the test does not know: {expr}"
        exprs[name] = expr
    return exprs


# ---------------------------------------------------------------------------- the checker itself


def test_the_checker_finds_what_is_wrong(promql: Path) -> None:
    """The same calls as below refuse broken input: passing means something."""
    got = parse(promql, {"ok": "sum by (a) (rate(x_total[5m])) > 0", "bad": "rate(x_total[5m]", "dur": "x[5q]"})
    assert got["ok"]["error"] == "" and got["ok"]["metrics"] == ["x_total"] and got["ok"]["type"] == "vector"
    assert "unclosed left parenthesis" in got["bad"]["error"]
    assert got["dur"]["error"]
    bad_rules = {
        "could not parse expression": {"alert": "A", "expr": "up ==", "for": "5m"},
        'not a valid duration string: "soon"': {"alert": "B", "expr": "up == 0", "for": "soon"},
        "annotation": {"alert": "C", "expr": "up == 0", "annotations": {"summary": "{{ $labels.x "}},
        "field colour not found": {"alert": "D", "expr": "up == 0", "colour": "red"},
    }
    for error, rule in bad_rules.items():
        errors = check_rules(promql, {"groups": [{"name": "g", "rules": [rule]}]})["errors"]
        assert any(error in e for e in errors), (rule, errors)
    good = {"groups": [{"name": "g", "rules": [{"alert": "E", "expr": "up == 0", "for": "5m"}]}]}
    assert check_rules(promql, good) == {"errors": [], "rules": [{"name": "E", "expr": "up == 0"}]}


def test_defined_metrics_are_what_the_operator_exposes() -> None:
    """Metrics.names() (what the expressions are checked against) is what /metrics serves once each is set."""
    m = Metrics(CollectorRegistry())
    collectors = [v for v in vars(m).values() if isinstance(v, MetricWrapperBase)]
    assert len(collectors) >= 20
    for collector in collectors:  # one series of each
        labelnames = collector._labelnames
        child = collector.labels(*["x"] * len(labelnames)) if labelnames else collector
        (child.observe if isinstance(collector, Histogram) else child.inc)(1)
    exposed = {
        line.split("{")[0].split(" ")[0]
        for line in generate_latest(m.registry).decode().splitlines()
        if line and not line.startswith("#")
    }
    assert {n for n in exposed if not n.endswith("_created")} == m.names()


# ---------------------------------------------------------------------------- the chart's files


def test_off_by_default(helm: Path, tmp_path: Path) -> None:
    docs = render(helm, tmp_path, {}, *MONITORING)
    assert not of_kind(docs, "PrometheusRule") and not of_kind(docs, "ConfigMap")
    # The PrometheusRule also needs the Prometheus Operator's API, like the ServiceMonitor.
    docs = render(helm, tmp_path, ON)
    assert not of_kind(docs, "PrometheusRule") and one(docs, "ConfigMap")


def test_alert_rules_pass_the_prometheus_rules_checker(helm: Path, tmp_path: Path, promql: Path) -> None:
    docs = render(
        helm, tmp_path, {**ON, "prometheusRule": {"enabled": True, "labels": {"release": "kps"}}}, *MONITORING
    )
    rule = one(docs, "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1" and rule["metadata"]["labels"]["release"] == "kps"
    checked = check_rules(promql, _rule_spec(docs))
    assert checked["errors"] == []
    assert {r["name"] for r in checked["rules"]} == ALERTS
    parsed = parse(promql, {r["name"]: r["expr"] for r in checked["rules"]})
    known = defined_metrics()
    for name, result in parsed.items():
        assert result["error"] == "" and result["type"] == "vector", (name, result)
        assert result["metrics"], f"{name} selects no metric"
        unknown = set(result["metrics"]) - known
        assert not unknown, f"{name} uses metrics httpsync.controller.metrics does not define: {unknown}"
    for r in _rule_spec(docs)["groups"][0]["rules"]:
        assert r["labels"]["severity"] and r["annotations"]["summary"] and r["annotations"]["description"]
    # The rendered rules are the shipped file's, unchanged.
    assert _rule_spec(docs) == yaml.safe_load((CHART / "files" / "prometheus-rules.yaml").read_text())


def _alert_exprs(helm: Path, tmp_path: Path) -> dict[str, str]:
    return {r["alert"]: r["expr"] for r in _rule_spec(render(helm, tmp_path, ON, *MONITORING))["groups"][0]["rules"]}


def _firing(result: list[dict[str, Any]], key: str) -> list[str]:
    return sorted(r["labels"][key] for r in result)


# Series every minute for 40 minutes; a gauge holding a Unix time is written in seconds since the load's start.
SOURCES_LOAD = """load 1m
  httpsync_source_ready{namespace="ns", source="down"} 0x40
  httpsync_source_ready_last_transition_timestamp_seconds{namespace="ns", source="down"} 0x40
  httpsync_source_interval_seconds{namespace="ns", source="down"} 60x40
  httpsync_source_ready{namespace="ns", source="up"} 1x40
  httpsync_source_ready_last_transition_timestamp_seconds{namespace="ns", source="up"} 0x40
  httpsync_source_interval_seconds{namespace="ns", source="up"} 60x40
  httpsync_source_ready{namespace="ns", source="slow"} 0x40
  httpsync_source_ready_last_transition_timestamp_seconds{namespace="ns", source="slow"} 0x40
  httpsync_source_interval_seconds{namespace="ns", source="slow"} 600x40
  httpsync_source_ready{namespace="ns", source="suspended"} 0x40
  httpsync_source_ready_last_transition_timestamp_seconds{namespace="ns", source="suspended"} 0x40
"""


def test_source_not_ready_fires_after_three_of_its_intervals(helm: Path, tmp_path: Path, promql: Path) -> None:
    expr = _alert_exprs(helm, tmp_path)["HttpSyncSourceNotReady"]
    at = {"2.8 intervals": 170, "3.2 intervals": 190, "3.2 of the slow one's": 1920}
    got = evaluate(promql, SOURCES_LOAD, {k: (expr, t) for k, t in at.items()})
    assert _firing(got["2.8 intervals"], "source") == []
    assert _firing(got["3.2 intervals"], "source") == ["down"]  # not Ready, not the Ready one, not the suspended one
    assert _firing(got["3.2 of the slow one's"], "source") == ["down", "slow"]


def test_mapping_stale_fires_after_three_intervals_without_success(helm: Path, tmp_path: Path, promql: Path) -> None:
    load = """load 1m
  httpsync_last_success_timestamp_seconds{namespace="ns", mapping="stuck"} 0x40
  httpsync_mapping_interval_seconds{namespace="ns", mapping="stuck"} 60x40
  httpsync_last_success_timestamp_seconds{namespace="ns", mapping="fresh"} 0 60 120 180 240 300
  httpsync_mapping_interval_seconds{namespace="ns", mapping="fresh"} 60x40
  httpsync_last_success_timestamp_seconds{namespace="ns", mapping="suspended"} 0x40
"""
    expr = _alert_exprs(helm, tmp_path)["HttpSyncMappingStale"]
    got = evaluate(promql, load, {"early": (expr, 170), "late": (expr, 300)})
    assert _firing(got["early"], "mapping") == []
    assert _firing(got["late"], "mapping") == ["stuck"]


@pytest.mark.parametrize(
    ("alert", "metric"),
    [
        ("HttpSyncDeletionGuardTripped", "httpsync_deletion_guard_trips_total"),
        ("HttpSyncSinkErrors", "httpsync_sink_errors_total"),
    ],
)
def test_counter_alerts_fire_on_an_increase_within_15_minutes(
    helm: Path, tmp_path: Path, promql: Path, alert: str, metric: str
) -> None:
    load = f"""load 1m
  {metric}{{namespace="ns", mapping="tripped", pod="op-0"}} 0x5 1x40
  {metric}{{namespace="ns", mapping="calm", pod="op-0"}} 0x45
"""
    expr = _alert_exprs(helm, tmp_path)[alert]
    got = evaluate(promql, load, {"before": (expr, 240), "after": (expr, 480), "long after": (expr, 1500)})
    assert _firing(got["before"], "mapping") == []
    assert _firing(got["after"], "mapping") == ["tripped"]
    assert "pod" not in got["after"][0]["labels"]  # one alert per mapping, whichever operator Pod counted
    assert _firing(got["long after"], "mapping") == []


def test_every_dashboard_expression_parses(helm: Path, tmp_path: Path, promql: Path) -> None:
    docs = render(
        helm,
        tmp_path,
        {"grafanaDashboard": {"enabled": True, "namespace": "monitoring", "annotations": {"f": "x"}}},
    )
    cm = one(docs, "ConfigMap")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["namespace"] == "monitoring" and cm["metadata"]["annotations"] == {"f": "x"}
    assert cm["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE
    dash = _dashboard(docs)
    assert dash == json.loads((CHART / "files" / "grafana-dashboard.json").read_text())
    graphs = [p for p in dash["panels"] if p["type"] != "row"]
    assert graphs and all(p.get("targets") for p in graphs), "a panel without a query"
    exprs = dashboard_exprs(dash)
    parsed = parse(promql, exprs)
    known = defined_metrics()
    for name, result in parsed.items():
        assert result["error"] == "", (name, exprs[name], result["error"])
        assert result["type"] in ("vector", "scalar"), (name, result["type"])
        unknown = set(result["metrics"]) - known
        assert not unknown, f"{name} uses metrics httpsync.controller.metrics does not define: {unknown}"
    used = {m for r in parsed.values() for m in r["metrics"]}
    # The panels show what the fleet needs watching (issue 14 §5).
    for metric in (
        "httpsync_syncs_in_flight",
        "httpsync_sync_slots",
        "httpsync_sync_queue_wait_seconds_bucket",
        "httpsync_schedule_drift_seconds_bucket",
        "httpsync_shard_objects",
    ):
        assert metric in used, f"no panel shows {metric}"
    assert len({p["id"] for p in dash["panels"]}) == len(dash["panels"]), "panel ids repeat"


def test_docs_list_every_metric() -> None:
    doc = (CHART.parents[1] / "docs" / "metrics.md").read_text()
    listed = set(re.findall(r"`(httpsync_[a-z_]+)`", doc))
    families = {
        f.name + ("_total" if f.type == "counter" else "") for f in Metrics(CollectorRegistry()).registry.collect()
    }
    assert not families - listed, f"docs/metrics.md does not list: {families - listed}"
    assert not listed - families, f"docs/metrics.md lists metrics that do not exist: {listed - families}"
