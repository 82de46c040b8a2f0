"""The PrometheusRule's rules, run by Prometheus' own promtool: they parse, the DORA recording
rules give the right figures (taken once over gateway replicas that export the same counts),
and each alert fires on what it is meant for and stays quiet otherwise."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.install.chart import NAMESPACE, one, render
from tests.support.tools import run

NS = f'namespace="{NAMESPACE}"'
REPO = 'provider="github",repository="acme/web",environment="preview"'
OUT = {"provider": "github", "repository": "acme/web", "environment": "preview"}


def rule_file(tmp_path: Path) -> Path:
    rule = one(render("everything"), "PrometheusRule")
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    return path


def promtool_test(tmp_path: Path, tests: list[dict[str, Any]]) -> None:
    rules = rule_file(tmp_path)
    spec = tmp_path / "tests.yaml"
    spec.write_text(yaml.safe_dump({"rule_files": [rules.name], "evaluation_interval": "5m", "tests": tests}))
    run("promtool", "test", "rules", str(spec), cwd=tmp_path)


def both_gateways(series: str, values: str) -> list[dict[str, str]]:
    """The same figure, as two gateway replicas export it (read from one Redis)."""
    return [{"series": series.replace("}", f',instance="{pod}"}}'), "values": values} for pod in ("a", "b")]


def test_the_rules_parse(tmp_path: Path) -> None:
    done = run("promtool", "check", "rules", str(rule_file(tmp_path)))
    assert "SUCCESS: 11 rules found" in done.stdout


def test_dora_recording_rules(tmp_path: Path) -> None:
    hour_edges = [
        "900.0",
        "3600.0",
        "21600.0",
        "86400.0",
        "604800.0",
        "2.629746e+06",
        "1.5778476e+07",
        "+Inf",
    ]
    series: list[dict[str, str]] = []

    def counter(name: str, total: int) -> None:
        """A counter at 0 for half the week, then at `total`: its increase over the week is exact."""
        series.extend(both_gateways(name, f"0x84 {total}x84"))

    # 336 successful deployments and 14 failed ones in the week; 7 changes failed.
    counter(f'k8s_ee_dora_deployments_total{{{NS},{REPO},result="success"}}', 336)
    counter(f'k8s_ee_dora_deployments_total{{{NS},{REPO},result="failure"}}', 14)
    counter(f"k8s_ee_dora_change_failures_total{{{NS},{REPO}}}", 7)
    # 10 lead times: 2 within an hour, 6 more within 6 h, 2 within a week (8 within a day).
    for le, count in zip(hour_edges, (0, 2, 8, 8, 10, 10, 10, 10), strict=True):
        counter(f'k8s_ee_dora_lead_time_seconds_bucket{{{NS},{REPO},le="{le}"}}', count)
    counter(f"k8s_ee_dora_lead_time_seconds_count{{{NS},{REPO}}}", 10)
    # 4 recoveries: all between 1 h and 6 h.
    for le, count in zip(hour_edges, (0, 0, 4, 4, 4, 4, 4, 4), strict=True):
        counter(f'k8s_ee_dora_failed_deployment_recovery_seconds_bucket{{{NS},{REPO},le="{le}"}}', count)

    def expect(name: str, value: float) -> dict[str, Any]:
        return {
            "expr": name,
            "eval_time": "168h",
            "exp_samples": [
                {
                    "labels": f'{name}{{provider="github",repository="acme/web",environment="preview"}}',
                    "value": value,
                }
            ],
        }

    promtool_test(
        tmp_path,
        [
            {
                "interval": "1h",
                "input_series": series,
                "promql_expr_test": [
                    expect("k8s_ee:dora_deployment_frequency:per_day_7d", 48),
                    expect("k8s_ee:dora_change_failure_rate:ratio_7d", 7 / 350),
                    expect("k8s_ee:dora_lead_time_within_1d:ratio_7d", 0.8),
                    # The median lead time: the 5th of 10, in the (1 h, 6 h] bucket, interpolated.
                    expect("k8s_ee:dora_lead_time_seconds:p50_7d", 3600 + (21600 - 3600) * (5 - 2) / 6),
                    expect(
                        "k8s_ee:dora_failed_deployment_recovery_seconds:p50_7d", 3600 + (21600 - 3600) * 2 / 4
                    ),
                ],
            }
        ],
    )


def alert(name: str, labels: dict[str, str], annotations: dict[str, str]) -> dict[str, Any]:
    return {"exp_labels": labels, "exp_annotations": annotations}


def test_alerts_fire_on_what_they_watch(tmp_path: Path) -> None:
    series = [
        # GitHub deliveries refused at 1 a minute; GitLab's all accepted.
        {
            "series": f'k8s_ee_deliveries_total{{{NS},instance="a",provider="github",type="unknown",verdict="rejected"}}',
            "values": "0+1x60",
        },
        {
            "series": f'k8s_ee_deliveries_total{{{NS},instance="a",provider="gitlab",type="change.opened",verdict="accepted"}}',
            "values": "0+5x60",
        },
        *both_gateways(f"k8s_ee_queue_depth{{{NS}}}", "150x60"),
        {
            "series": f'k8s_ee_reconciles_total{{{NS},instance="w1",outcome="gave_up"}}',
            "values": "0x20 1+1x40",
        },
        {"series": f'k8s_ee_reconciles_total{{{NS},instance="w1",outcome="failed"}}', "values": "0+3x60"},
        {"series": f'k8s_ee_sweep_errors_total{{{NS},instance="w1"}}', "values": "0x30 2x30"},
        *both_gateways(f'k8s_ee_provider_rate_limit_remaining{{{NS},key="github:77"}}', "400x60"),
        *both_gateways(f'k8s_ee_provider_rate_limit_limit{{{NS},key="github:77"}}', "5000x60"),
        *both_gateways(f'k8s_ee_provider_rate_limit_remaining{{{NS},key="gitlab:token"}}', "1500x60"),
        *both_gateways(f'k8s_ee_provider_rate_limit_limit{{{NS},key="gitlab:token"}}', "2000x60"),
        *both_gateways(f"k8s_ee_worker_heartbeat_age_seconds{{{NS}}}", "5x30 300x30"),
    ]
    warning = {"severity": "warning"}
    tests = {
        "K8sEeDeliveriesRefused": [
            alert(
                "",
                {**warning, "provider": "github", "verdict": "rejected"},
                {
                    "summary": "github deliveries are being rejected",
                    "description": "See GET /api/v1/deliveries?verdict=rejected for the reasons.",
                },
            )
        ],
        "K8sEeQueueBacklog": [
            alert(
                "",
                warning,
                {
                    "summary": "150 jobs are waiting in the queue",
                    "description": "The workers do not keep up (or none runs): scale them out, or look at their logs.",
                },
            )
        ],
        "K8sEeReconcileFailures": [
            alert(
                "",
                warning,
                {
                    "summary": "Reconciles are failing",
                    "description": "GET /api/v1/environments?state=failed shows each environment's last_error.",
                },
            )
        ],
        "K8sEeSweepErrors": [
            alert(
                "",
                warning,
                {
                    "summary": "The periodic sweep meets errors",
                    "description": "Environments are kept while their host cannot be read; see the worker's log.",
                },
            )
        ],
        "K8sEeRateLimitBudgetLow": [
            alert(
                "",
                {**warning, "key": "github:77"},
                {
                    "summary": "github:77 has 8% of its rate limit left",
                    "description": "Reports are delayed until the window resets; another credential spreads the load.",
                },
            )
        ],
        "K8sEeNoWorkerHeartbeat": [
            alert(
                "",
                {"severity": "critical"},
                {
                    "summary": "No worker heartbeat for 5m 0s",
                    "description": "Check the worker Deployment's pods and their access to Redis.",
                },
            )
        ],
    }
    quiet_at = {"K8sEeReconcileFailures": "15m", "K8sEeSweepErrors": "25m", "K8sEeNoWorkerHeartbeat": "25m"}
    checks = []
    for name, expected in tests.items():
        checks.append({"eval_time": "58m", "alertname": name, "exp_alerts": expected})
        if name in quiet_at:
            checks.append({"eval_time": quiet_at[name], "alertname": name, "exp_alerts": []})
    promtool_test(tmp_path, [{"interval": "1m", "input_series": series, "alert_rule_test": checks}])
