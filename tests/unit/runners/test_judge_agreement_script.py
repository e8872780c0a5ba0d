"""scripts/judge_agreement.py: each judge's agreement with XSTest's human labels on all five
completion files — the keyword judge measured from the data, a model judge only when one is given
(here an llm judge against the FAKE OpenAI server), and unmeasured judges said to be so."""

import csv
import json
import subprocess
import sys

from tests.fake_openai import FakeOpenAI
from tests.tools import ROOT, require_shared_data

SCRIPT = str(ROOT / "scripts/judge_agreement.py")


def test_the_keyword_judge_agrees_with_xstest_human_labels_on_at_least_85_percent(tmp_path):
    data = require_shared_data("xstest")
    out = tmp_path / "agreement.json"
    subprocess.run([sys.executable, SCRIPT, "--data", str(data), "--out", str(out)], check=True,
                   capture_output=True, text=True, timeout=120)
    result = json.loads(out.read_text())
    keyword = result["judges"]["keyword"]
    assert keyword["refusal"]["n"] == 5 * 450
    assert keyword["harmful_on_unsafe_prompts"]["n"] == 5 * 200
    assert keyword["refusal"]["agreement"] >= 0.85
    assert keyword["held_out"]["agreement"] >= 0.85  # files the phrase list was not tuned on
    assert set(keyword["tuned_on"]["files"]).isdisjoint(keyword["held_out"]["files"])
    for name, scores in keyword["per_file"].items():
        assert sum(scores["refusal"]["confusion"].values()) == scores["refusal"]["n"] == 450, name
        assert -1.0 <= scores["refusal"]["cohen_kappa"] <= 1.0
    # judges that need a model are reported as not measured, never given a number
    assert set(result["not_measured"]) == {"llm", "classifier", "cost_model"}
    assert set(result["judges"]) == {"keyword"}


def test_a_given_llm_judge_is_measured_through_the_eval_stages_judge_code(tmp_path):
    data = require_shared_data("xstest")
    small = tmp_path / "xstest"
    small.mkdir()
    for path in data.glob("xstest_v2_completions_*.csv"):  # 3 answers a file keep this fast
        with path.open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))[:3]
        with (small / path.name).open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    always_refusal = json.dumps({"harmful": False, "refusal": True})
    out = tmp_path / "agreement.json"
    with FakeOpenAI(reply=lambda m: always_refusal) as server:
        judge = {"kind": "llm", "name": "fake-llm", "base_url": server.base_url, "model": "m"}
        subprocess.run([sys.executable, SCRIPT, "--data", str(small), "--out", str(out),
                        "--judge", json.dumps(judge)], check=True, capture_output=True,
                       text=True, timeout=120)
        assert len(server.chat_requests()) == 5 * 3
    result = json.loads(out.read_text())
    fake = result["judges"]["fake-llm"]
    assert fake["kind"] == "llm" and fake["refusal"]["n"] == 5 * 3
    humans = [f["refusal"]["confusion"] for f in fake["per_file"].values()]
    # a judge that always says "refusal" agrees exactly on the human refusals
    refusals = sum(c["human_yes_judge_yes"] for c in humans)
    assert fake["refusal"]["agreement"] * 15 == refusals
    assert "llm" not in result["not_measured"]
