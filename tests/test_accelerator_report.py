"""scripts/accelerator_report.py's CPU smoke run: every case is there, its figures are consistent
with each other and with the sizes it ran, and the markdown table holds the JSON's rows."""
import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_smoke_run_writes_a_consistent_table_and_json(tmp_path):
    out = tmp_path / "report"
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "accelerator_report.py"), "--smoke", "--out", str(out)],
                            capture_output=True, text=True, cwd=tmp_path, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((out / "accelerator_report.json").read_text())
    rows, size = report["rows"], report["settings"]
    torch_ok = importlib.util.find_spec("torch") is not None

    def cases(case, framework="aejax"):
        return [r for r in rows if r["case"] == case and r["framework"].startswith(framework)]

    assert {(r["model"], r["batch"]) for r in cases("speed")} == {(m, b) for m in ("bowtie", "conv") for b in (16, 32)}
    assert len(cases("speed", "torch")) == (4 if torch_ok else 0)
    assert sorted(r["seeds"] for r in cases("seeds")) == list(size["seeds"]) == [1, 2]
    assert {(r["model"], r["dtype"]) for r in cases("precision")} == {("bowtie", "bfloat16"), ("conv", "bfloat16")}
    # one job, then a batched group of two (latent_dim 2 and 3, padded), each through aejax-train -m
    assert [r["seeds"] for r in cases("group")] == [1, 2]
    one, group = cases("group")
    ratio = f"trains in {group['train_s'] / one['train_s']:.2f}x the training time of one of them alone"
    assert ratio in (out / "accelerator_report.md").read_text()
    # tests/conftest.py gives this process (and so the script) 8 virtual CPU devices
    assert {(r["model"], r["parallel"], r["batch"]) for r in cases("sharded")} == {("bowtie", "sharded", 32),
                                                                                   ("conv", "sharded", 32)}
    assert report["machine"]["devices"] == 8 and report["machine"]["backend"] == "cpu"
    for r in rows:
        assert r["examples_per_s"] > 0 and math.isfinite(r["examples_per_s"]) and r["train_s"] > 0
        assert r["model_examples_per_s"] == pytest.approx(r["examples_per_s"] * r["seeds"])
        assert 0 < r["val_loss"] < 1  # MSE of pixels in [0, 1] through a sigmoid
        assert r["steps"] == r["epochs"] * math.ceil(size["train"] / r["batch"])
        if r["framework"] == "aejax":  # the summary's rate is the examples it trained over its training time
            # (train_time_s is rounded to 1 ms, which moves a smoke run's rate of a few 10 ms by percents)
            trained = size["train"] * r["epochs"]
            assert trained / (r["train_s"] + 5e-4) * 0.99 <= r["examples_per_s"] <= trained / max(r["train_s"] - 5e-4, 1e-9) * 1.01
            assert r["compile_s"] > 0 and (out / "runs").is_dir()
    table = [line for line in (out / "accelerator_report.md").read_text().splitlines() if line.startswith("| ")]
    assert len(table) == 1 + len(rows)  # the header and one line per row, in order
    for line, r in zip(table[1:], rows):
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[:4] == [r["case"], r["framework"], r["model"], str(r["batch"])]
        assert float(cells[7].replace(",", "")) == pytest.approx(r["examples_per_s"], abs=0.5)
