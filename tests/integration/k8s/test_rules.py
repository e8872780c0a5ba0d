"""Alert rules: promtool check + one promtool unit-test file per alert, runbooks, generated copies.

promtool (Debian prometheus 2.42) evaluates the rules on synthetic series; no live Prometheus or
Alertmanager is involved.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from tests.integration.k8s.helpers import RULES_FILE
from tests.tools import ROOT, require_tool

RULE_TESTS = sorted((ROOT / "tests" / "integration" / "k8s" / "rules").glob("*.test.yaml"))
ALERTS = [r["alert"] for g in yaml.safe_load(RULES_FILE.read_text())["groups"]
          for r in g["rules"] if "alert" in r]


def _promtool(*args: str) -> subprocess.CompletedProcess:
    exe = require_tool("promtool")
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=120)


def test_rules_pass_promtool_check():
    proc = _promtool("check", "rules", str(RULES_FILE))
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("test_file", RULE_TESTS, ids=lambda p: p.name)
def test_promtool_unit_tests_pass(test_file):
    proc = subprocess.run([require_tool("promtool"), "test", "rules", test_file.name],
                          capture_output=True, text=True, timeout=120, cwd=test_file.parent)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_alert_has_its_own_unit_test_file_that_expects_it_to_fire():
    firing: dict[str, list[str]] = {}
    for path in RULE_TESTS:
        doc = yaml.safe_load(path.read_text())
        for test in doc["tests"]:
            for case in test.get("alert_rule_test", []):
                if case.get("exp_alerts"):
                    firing.setdefault(case["alertname"], []).append(path.name)
    assert set(ALERTS) == set(firing), "alerts without a firing test case"
    assert all(len(set(files)) == 1 for files in firing.values())
    assert len({files[0] for files in firing.values()}) == len(ALERTS)


def test_the_required_alerts_are_shipped():
    assert {"SaferlhfLambdaPinnedAtMax", "SaferlhfEpisodeCostAboveThreshold",
            "SaferlhfHarmfulRatioAboveGate", "SaferlhfStageStalled", "SaferlhfJobFailed",
            "SaferlhfServiceDown", "SaferlhfSafetyGuardActive"} <= set(ALERTS)


def test_every_alert_has_a_runbook_entry_its_annotation_points_to():
    doc = (ROOT / "docs" / "monitoring.md").read_text()
    headings = {line.lstrip("#").strip().lower() for line in doc.splitlines()
                if line.startswith("### ")}
    for group in yaml.safe_load(RULES_FILE.read_text())["groups"]:
        for rule in group["rules"]:
            assert rule["alert"].lower() in headings, f"no runbook heading for {rule['alert']}"
            anchor = rule["annotations"]["runbook_url"].rsplit("#", 1)[1]
            assert anchor == rule["alert"].lower()


def test_generated_copies_of_rules_and_dashboard_are_up_to_date():
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "build_dashboard.py"),
                           "--check"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
