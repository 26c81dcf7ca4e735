"""Operations deliverables: Prometheus config and alert rules (checked and unit-tested with
promtool), Alertmanager routing, Grafana provisioning and dashboard, the compose stack and
the operations guide. Metric names are checked against the collectors of agents/metrics.py,
so a renamed metric breaks this test rather than a dashboard in production."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from agents.metrics import Metrics
from tests.system_tools import needs_tool

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
PROM_DIR = DEPLOY / "prometheus"
RULES = PROM_DIR / "rules.yml"
RULES_TEST = PROM_DIR / "rules_test.yml"
AM_CONFIG = DEPLOY / "alertmanager" / "alertmanager.yml"
GRAFANA = DEPLOY / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "wardwatch.json"
COMPOSE = ROOT / "docker-compose.yml"
OPS_DOC = ROOT / "docs" / "operations.md"

PROMTOOL = shutil.which("promtool")
AMTOOL = shutil.which("amtool")
needs_promtool = needs_tool(
    PROMTOOL is not None,
    "promtool not on PATH (Debian package `prometheus`; .ci/run installs it)",
)
needs_amtool = needs_tool(
    AMTOOL is not None,
    "amtool not on PATH (Debian package `prometheus-alertmanager`; .ci/run installs it)",
)

SEVERITIES = {"critical", "warning"}
# Label names an alert may carry or group by: bounded, operational, never about a patient.
ALLOWED_ALERT_LABELS = {
    "severity",
    "job",
    "instance",
    "topic",
    "partition",
    "reason",
    "model",
    "version",
    "stage",
    "op",
    "priority",
    "transition",
    "code",
    "outcome",
    "le",
}
# Words that must never appear in a metric's label names (privacy rule, docs/operations.md).
FORBIDDEN_LABEL_WORDS = ("patient", "mrn", "nhs", "subject", "encounter", "bed", "name", "dob")
PROMETHEUS_SYNTHETIC = {"up"}  # series Prometheus itself writes for each target


def run(*cmd: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=60, check=False)


def assert_ok(proc: subprocess.CompletedProcess[str]) -> None:
    assert proc.returncode == 0, (
        f"{' '.join(proc.args)} exited {proc.returncode}\n"
        f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
    )


@pytest.fixture(scope="module")
def yaml() -> ModuleType:
    return pytest.importorskip(
        "yaml", reason="PyYAML is not installed (it belongs in the dev extra of pyproject.toml)"
    )


def load_yaml(yaml: ModuleType, path: Path) -> Any:
    with path.open(encoding="utf-8") as f:
        return yaml.safe_load(f)


# ---------------------------------------------------------------------------------------
# Metric names and PromQL
# ---------------------------------------------------------------------------------------


def exported_metric_names() -> set[str]:
    """Series names a worker exports, from the collectors of agents.metrics.Metrics."""
    registry = CollectorRegistry()
    Metrics(registry)
    names: set[str] = set()
    for family in registry.collect():
        if family.type == "counter":
            names.add(f"{family.name}_total")
        elif family.type == "histogram":
            names.update(f"{family.name}{suffix}" for suffix in ("_bucket", "_sum", "_count"))
        elif family.type == "info":
            names.add(f"{family.name}_info")
        else:
            names.add(family.name)
    return names


PROMQL_KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "bool", "offset"}
PROMQL_KEYWORDS |= {"group_left", "group_right", "inf", "nan"}


def promql_metric_names(expr: str) -> set[str]:
    """Metric names an expression selects (not functions, keywords, labels or durations)."""
    s = re.sub(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'', '""', expr)
    s = re.sub(r"\{[^}]*\}", " ", s)  # label matchers
    s = re.sub(r"\[[^\]]*\]", " ", s)  # ranges and subqueries
    s = re.sub(
        r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s
    )  # label lists
    names = set()
    for m in re.finditer(r"(?<![A-Za-z0-9_:.$])[A-Za-z_:][A-Za-z0-9_:]*", s):
        if re.match(r"\s*\(", s[m.end() :]):
            continue  # a function call
        if m.group(0).lower() not in PROMQL_KEYWORDS:
            names.add(m.group(0))
    return names


def test_promql_metric_names_parser() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le, stage) (rate(wardwatch_stage_seconds_bucket{job="x",'
        ' stage=~"a|b"}[5m]))) > 5 and on() deriv(sum(max by (topic) (lag_x))[10m:1m]) > 1e3'
        " unless foo offset 15m or vector(0) * time()"
    )
    assert promql_metric_names(expr) == {"wardwatch_stage_seconds_bucket", "lag_x", "foo"}


def test_metric_labels_carry_no_patient_identifiers() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    for attr, collector in vars(metrics).items():
        labelnames = getattr(collector, "_labelnames", ())
        for label in labelnames:
            assert not any(word in label.lower() for word in FORBIDDEN_LABEL_WORDS), (
                f"metric {attr} has label {label!r}: labels must never identify a patient"
            )


# ---------------------------------------------------------------------------------------
# Prometheus: config, rules, rule unit tests
# ---------------------------------------------------------------------------------------


@needs_promtool
def test_promtool_check_config() -> None:
    # run in the config's folder: rule_files are relative to it, as in the container
    assert PROMTOOL is not None
    assert_ok(run(PROMTOOL, "check", "config", "prometheus.yml", cwd=PROM_DIR))


@needs_promtool
def test_promtool_check_rules() -> None:
    assert PROMTOOL is not None
    proc = run(PROMTOOL, "check", "rules", "rules.yml", cwd=PROM_DIR)
    assert_ok(proc)
    assert "SUCCESS" in proc.stdout


@needs_promtool
def test_promtool_test_rules() -> None:
    assert PROMTOOL is not None
    proc = run(PROMTOOL, "test", "rules", "rules_test.yml", cwd=PROM_DIR)
    assert_ok(proc)
    assert "SUCCESS" in proc.stdout, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def rules(yaml: ModuleType) -> list[dict[str, Any]]:
    doc = load_yaml(yaml, RULES)
    groups = {g["name"]: g for g in doc["groups"]}
    assert set(groups) == {"wardwatch"}
    out: list[dict[str, Any]] = groups["wardwatch"]["rules"]
    return out


def test_prometheus_config_scrapes_both_workers(yaml: ModuleType) -> None:
    cfg = load_yaml(yaml, PROM_DIR / "prometheus.yml")
    jobs = {job["job_name"]: job for job in cfg["scrape_configs"]}
    job = jobs["wardwatch"]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    targets = {t for sc in job["static_configs"] for t in sc["targets"]}
    assert targets == {"worker-1:6066", "worker-2:6066"}
    assert cfg["rule_files"] == ["rules.yml"]
    am = {
        t
        for a in cfg["alerting"]["alertmanagers"]
        for sc in a["static_configs"]
        for t in sc["targets"]
    }
    assert am == {"alertmanager:9093"}
    services = set(load_yaml(yaml, COMPOSE)["services"])
    for host in {t.split(":")[0] for t in targets | am}:
        assert host in services, f"{host} is not a compose service"


def test_rules_are_complete_and_documented(rules: list[dict[str, Any]]) -> None:
    required = {
        "WardwatchWorkerDown",
        "WardwatchConsumerLagGrowing",
        "WardwatchNoVitals",
        "WardwatchDeadLetterRateHigh",
        "WardwatchEventToAlertLatencyHigh",
        "WardwatchModelLoadFailures",
        "WardwatchModelUnavailable",
    }
    assert required <= {r["alert"] for r in rules}
    ops = OPS_DOC.read_text(encoding="utf-8")
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", h.strip().lower()).replace(" ", "-")
        for h in re.findall(r"^#+ (.+)$", ops, flags=re.M)
    }
    for rule in rules:
        name = rule["alert"]
        assert rule["labels"]["severity"] in SEVERITIES, name
        ann = rule["annotations"]
        for key in ("summary", "description", "runbook"):
            assert ann.get(key, "").strip(), f"{name} lacks annotation {key}"
        doc, _, anchor = ann["runbook"].partition("#")
        assert doc == "docs/operations.md" and anchor in anchors, (
            f"{name}: runbook {ann['runbook']} has no matching heading in docs/operations.md"
        )
    # the same alertname at two levels differs in severity only (Alertmanager inhibition)
    pairs = [(r["alert"], r["labels"]["severity"]) for r in rules]
    assert len(pairs) == len(set(pairs))


def test_rule_labels_carry_no_patient_identifiers(rules: list[dict[str, Any]]) -> None:
    for rule in rules:
        name = rule["alert"]
        assert set(rule.get("labels", {})) <= ALLOWED_ALERT_LABELS, name
        text = " ".join(str(v) for v in rule["annotations"].values())
        for label in re.findall(r"\$labels\.(\w+)", text):
            assert label in ALLOWED_ALERT_LABELS, f"{name} annotation uses label {label}"
        for group in re.findall(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)", rule["expr"]):
            for label in filter(None, (x.strip() for x in group.split(","))):
                assert label in ALLOWED_ALERT_LABELS, f"{name} groups by {label}"


def test_every_rule_has_a_firing_and_a_quiet_test(
    yaml: ModuleType, rules: list[dict[str, Any]]
) -> None:
    suite = load_yaml(yaml, RULES_TEST)
    assert suite["rule_files"] == ["rules.yml"]
    fired: set[tuple[str, str]] = set()
    quiet: set[str] = set()
    for test in suite["tests"]:
        for case in test.get("alert_rule_test", []):
            if case.get("exp_alerts"):
                for alert in case["exp_alerts"]:
                    fired.add((case["alertname"], alert["exp_labels"]["severity"]))
                    assert set(alert["exp_annotations"]) >= {"summary", "description", "runbook"}
            else:
                quiet.add(case["alertname"])
    for rule in rules:
        key = (rule["alert"], rule["labels"]["severity"])
        assert key in fired, f"no test in rules_test.yml fires {key}"
        assert rule["alert"] in quiet, f"no test in rules_test.yml keeps {rule['alert']} quiet"


def test_rules_use_only_exported_metrics(rules: list[dict[str, Any]]) -> None:
    known = exported_metric_names() | PROMETHEUS_SYNTHETIC
    for rule in rules:
        used = promql_metric_names(rule["expr"])
        assert used, f"{rule['alert']}: no metric found in {rule['expr']}"
        assert used <= known, f"{rule['alert']} uses unknown metrics {used - known}"


# ---------------------------------------------------------------------------------------
# Alertmanager
# ---------------------------------------------------------------------------------------


def _matchers(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        m = re.fullmatch(r'\s*(\w+)\s*=\s*"?([^"]*)"?\s*', item)
        assert m, f"only equality matchers are expected here: {item!r}"
        out[m.group(1)] = m.group(2)
    return out


def _receiver_for(route: dict[str, Any], labels: dict[str, str]) -> str:
    for child in route.get("routes", []):
        wanted = _matchers(child.get("matchers", []))
        if all(labels.get(k) == v for k, v in wanted.items()):
            return _receiver_for(child, labels) if child.get("routes") else child["receiver"]
    return str(route["receiver"])


def test_alertmanager_routes_by_severity(yaml: ModuleType) -> None:
    cfg = load_yaml(yaml, AM_CONFIG)
    route = cfg["route"]
    assert "alertname" in route["group_by"]
    receivers = {r["name"]: r for r in cfg["receivers"]}
    assert _receiver_for(route, {"alertname": "X", "severity": "critical"}) == "pager"
    assert _receiver_for(route, {"alertname": "X", "severity": "warning"}) == "chat"
    for name in ("pager", "chat"):
        urls = [w["url"] for w in receivers[name]["webhook_configs"]]
        assert urls and all(u.startswith("http") and ".invalid" in u for u in urls), urls
    inhibit = cfg["inhibit_rules"]
    assert any(
        _matchers(r["source_matchers"]) == {"severity": "critical"}
        and _matchers(r["target_matchers"]) == {"severity": "warning"}
        and r["equal"] == ["alertname"]
        for r in inhibit
    )


@needs_amtool
def test_amtool_check_config() -> None:
    assert AMTOOL is not None
    assert_ok(run(AMTOOL, "check-config", str(AM_CONFIG)))
    for severity, receiver in (("critical", "pager"), ("warning", "chat")):
        assert_ok(
            run(
                AMTOOL,
                "config",
                "routes",
                "test",
                f"--config.file={AM_CONFIG}",
                f"--verify.receivers={receiver}",
                "alertname=WardwatchWorkerDown",
                f"severity={severity}",
            )
        )


# ---------------------------------------------------------------------------------------
# Grafana
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    text = DASHBOARD.read_text(encoding="utf-8")
    assert "${DS_" not in text, "use the provisioned datasource uid, not an import variable"
    out: dict[str, Any] = json.loads(text)
    return out


def _panels(dash: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dash["panels"]:
        yield panel
        yield from panel.get("panels", [])  # panels of a collapsed row


def _exprs(dash: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for panel in _panels(dash):
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"]


def test_dashboard_panels_have_datasource_and_targets(dashboard: dict[str, Any]) -> None:
    assert dashboard["uid"] == "wardwatch"
    ids = [p["id"] for p in _panels(dashboard)]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    graphs = [p for p in _panels(dashboard) if p["type"] != "row"]
    assert len(graphs) >= 13
    for panel in graphs:
        title = panel["title"]
        assert panel["datasource"]["uid"] == "prometheus", title
        assert panel["targets"], f"panel {title!r} has no target"
        assert set(panel["gridPos"]) >= {"h", "w", "x", "y"}, title
        for target in panel["targets"]:
            assert target.get("datasource", {"uid": "prometheus"})["uid"] == "prometheus", title
            assert target["expr"].strip(), title
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query":
            assert var["datasource"]["uid"] == "prometheus", var["name"]
    rows = {p["title"] for p in _panels(dashboard) if p["type"] == "row"}
    assert {"Throughput", "Latency", "Alerts", "Kafka", "Models"} <= rows


def test_dashboard_uses_only_exported_metrics(dashboard: dict[str, Any]) -> None:
    known = exported_metric_names() | PROMETHEUS_SYNTHETIC
    used: set[str] = set()
    for title, expr in _exprs(dashboard):
        names = promql_metric_names(expr)
        assert names, f"{title}: no metric in {expr}"
        assert names <= known, f"panel {title!r} uses unknown metrics {names - known}"
        used |= names
    must_show = {
        "wardwatch_events_consumed_total",
        "wardwatch_events_scored_total",
        "wardwatch_dead_letter_total",
        "wardwatch_event_to_alert_seconds_bucket",
        "wardwatch_stage_seconds_bucket",
        "wardwatch_batch_size_bucket",
        "wardwatch_redis_seconds_bucket",
        "wardwatch_inference_seconds_bucket",
        "wardwatch_alert_transitions_total",
        "wardwatch_time_to_acknowledge_seconds_bucket",
        "wardwatch_consumer_lag",
        "wardwatch_patients_monitored",
        "wardwatch_open_alerts",
        "wardwatch_model_info",
    }
    assert must_show <= used, f"dashboard does not show {must_show - used}"


@needs_promtool
def test_dashboard_promql_parses(dashboard: dict[str, Any], tmp_path: Path) -> None:
    """Every panel query, with Grafana's variables substituted, is valid PromQL."""
    assert PROMTOOL is not None
    lines = ["groups:", "  - name: dashboard", "    rules:"]
    for i, (_, expr) in enumerate(_exprs(dashboard)):
        promql = expr.replace("$__rate_interval", "1m").replace("$instance", ".*")
        assert "$" not in promql, f"unsubstituted Grafana variable in {expr}"
        lines += [f"      - record: dashboard:query_{i}", f"        expr: {json.dumps(promql)}"]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert_ok(run(PROMTOOL, "check", "rules", str(path)))


def test_grafana_provisioning(yaml: ModuleType) -> None:
    ds = load_yaml(yaml, GRAFANA / "provisioning" / "datasources" / "prometheus.yml")
    (source,) = ds["datasources"]
    assert (source["uid"], source["type"]) == ("prometheus", "prometheus")
    assert source["url"] == "http://prometheus:9090"
    prov = load_yaml(yaml, GRAFANA / "provisioning" / "dashboards" / "wardwatch.yml")
    (provider,) = prov["providers"]
    assert provider["type"] == "file"
    mounts = dict(_bind_mounts(load_yaml(yaml, COMPOSE)["services"]["grafana"]))
    assert mounts["./deploy/grafana/dashboards"] == provider["options"]["path"]
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"


# ---------------------------------------------------------------------------------------
# docker compose
# ---------------------------------------------------------------------------------------


def _bind_mounts(service: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for vol in service.get("volumes", []):
        if isinstance(vol, dict):
            if vol.get("type") == "bind":
                yield vol["source"], vol["target"]
        elif vol.startswith((".", "/")):
            src, dst = vol.split(":")[:2]
            yield src, dst


def _networks(service: dict[str, Any]) -> list[str]:
    nets = service.get("networks", ["default"])
    return list(nets) if isinstance(nets, dict | list) else [nets]


def test_docker_compose_config() -> None:
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("docker CLI not on PATH")
    if run(docker, "compose", "version").returncode != 0:
        pytest.skip("docker CLI has no compose plugin (`docker compose config` needs it)")
    assert_ok(run(docker, "compose", "-f", str(COMPOSE), "config", "-q"))


def test_compose_structure(yaml: ModuleType) -> None:
    services = load_yaml(yaml, COMPOSE)["services"]
    expected = {"kafka", "redis", "worker-1", "worker-2", "simulator", "trainer"}
    expected |= {"prometheus", "alertmanager", "grafana"}
    assert expected <= set(services)
    assert "trainer" in services["trainer"]["profiles"]

    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    env = kafka["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] and env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    assert not any("ZOOKEEPER" in k for k in env)

    redis_cmd = " ".join(services["redis"]["command"])
    assert "--requirepass" in redis_cmd
    assert re.search(r"--appendonly\s+yes", redis_cmd)

    # the workers' web port is on the compose network for Prometheus (Dockerfile binds 0.0.0.0),
    # and they share a network with Kafka and Redis
    assert "WARDWATCH_WEB_HOST=0.0.0.0" in (ROOT / "Dockerfile").read_text(encoding="utf-8")
    for name in ("worker-1", "worker-2"):
        worker = services[name]
        assert "network_mode" not in worker, name
        nets = set(_networks(worker))
        for peer in ("prometheus", "kafka", "redis"):
            assert nets & set(_networks(services[peer])), f"{name} cannot reach {peer}"
        assert str(worker.get("environment", {}).get("WARDWATCH_WEB_PORT", 6066)) == "6066"

    prom = services["prometheus"]
    assert prom["image"].startswith("prom/prometheus:")
    assert "--config.file=/etc/prometheus/prometheus.yml" in prom["command"]
    assert dict(_bind_mounts(prom))["./deploy/prometheus"] == "/etc/prometheus"
    am = services["alertmanager"]
    assert am["image"].startswith("prom/alertmanager:")
    assert "--config.file=/etc/alertmanager/alertmanager.yml" in am["command"]
    assert dict(_bind_mounts(am))["./deploy/alertmanager"] == "/etc/alertmanager"
    grafana = services["grafana"]
    assert grafana["image"].startswith("grafana/grafana:")
    assert "${GRAFANA_ADMIN_PASSWORD" in grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD"]

    for name, service in services.items():
        for src, _ in _bind_mounts(service):
            assert (ROOT / src).exists(), f"{name} mounts {src}, which is not in the repo"


# ---------------------------------------------------------------------------------------
# docs/operations.md
# ---------------------------------------------------------------------------------------


def test_operations_doc_covers_every_metric_and_endpoint() -> None:
    text = OPS_DOC.read_text(encoding="utf-8")
    registry = CollectorRegistry()
    Metrics(registry)
    for family in registry.collect():
        name = family.name + ("_info" if family.type == "info" else "")
        name += "_total" if family.type == "counter" else ""
        assert name in text, f"docs/operations.md does not describe {name}"
    for endpoint in ("/metrics", "/healthz", "/readyz"):
        assert endpoint in text
