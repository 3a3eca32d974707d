"""A tiny run of the benchmark harness, so `make bench` cannot rot unnoticed."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def test_bench_smoke(tmp_path):
    # 100 messages to 41 clients: enough CPU to span several 10 ms ticks of /proc accounting.
    command = [sys.executable, str(ROOT / "bench/run.py"), "--sizes", "40", "--reps", "1"]
    command += ["--servers", "chatwsgi,naive", "--messages", "100", "--no-plot", "--out", str(tmp_path)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    (record_file,) = tmp_path.glob("*.json")
    record = json.loads(record_file.read_text())
    rows = {row["server"]: row for row in record["medians"]}
    assert set(rows) == {"chatwsgi", "naive"}
    assert all(run["fanout_complete"] and run["broadcasts"] == 100 for run in record["runs"])
    for row in rows.values():
        # "valid" judges the load generator's headroom: at 40 clients a 10-message burst can
        # keep it busy, so the smoke run checks it is reported, not what it says.
        assert isinstance(row["valid"], bool) and row["clients"] == 40
        assert row["server_cpu_us_per_delivery"] > 0 and row["deliveries_per_second"] > 0
        assert row["single_broadcast_cpu_us_per_delivery"] > 0
        assert row["latency_p99_ms"] > 0 and row["rss_per_connection_bytes"] > 0
    assert "| 40 | naive |" in next(tmp_path.glob("*.md")).read_text()


def test_steady_storm_smoke(tmp_path):
    # 40 clients in 4 rooms of 10, one 1-second step, then a storm: every message delivered.
    command = [sys.executable, str(ROOT / "bench/steady_storm.py"), "--clients", "40", "--rooms", "4"]
    command += ["--steps", "20", "--step-seconds", "1", "--drain-timeout", "5", "--idle-seconds", "0.5"]
    command += ["--storm-rooms", "4", "--reps", "1", "--servers", "chatwsgi,naive"]
    command += ["--floor-broadcasts", "50", "--out", str(tmp_path)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    record = json.loads(next(tmp_path.glob("*-steady-storm.json")).read_text())
    assert record["floor"]["sizes"]["10"]["cpu_us_per_delivery"] > 0
    assert {run["server"] for run in record["steady"]} == {"chatwsgi", "naive"}
    for run in record["steady"]:
        (step,) = run["steps"]
        assert step["complete"] and step["delivered"] == step["expected"] == 20 * 10
        assert step["p99_ms"] > 0 and step["server_cpu_us_per_delivery"] >= 0
    assert [run["server"] for run in record["storm"]] == ["chatwsgi", "naive"]
    assert all(run["join_failures"] == 0 and run["joins_per_second"] > 0 for run in record["storm"])
    assert "## Reconnect storm" in next(tmp_path.glob("*-steady-storm.md")).read_text()
