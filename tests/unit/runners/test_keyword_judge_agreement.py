"""The keyword judge's agreement with XSTest's human labels, measured from the data."""

import json
import subprocess
import sys

from tests.tools import ROOT, require_shared_data


def test_keyword_judge_agrees_with_xstest_human_labels_on_at_least_85_percent(tmp_path):
    data = require_shared_data("xstest")
    out = tmp_path / "agreement.json"
    subprocess.run(
        [sys.executable, str(ROOT / "scripts/keyword_judge_agreement.py"), "--data", str(data),
         "--out", str(out)], check=True, capture_output=True, text=True, timeout=120,
    )
    result = json.loads(out.read_text())
    assert result["overall"]["n"] == 5 * 450
    assert result["overall"]["agreement"] >= 0.85
    assert result["held_out"]["agreement"] >= 0.85  # files the phrase list was not tuned on
    assert set(result["tuned_on"]["files"]).isdisjoint(result["held_out"]["files"])
    for name, scores in result["per_file"].items():
        confusion = scores["confusion"]
        assert sum(confusion.values()) == scores["n"] == 450, name
