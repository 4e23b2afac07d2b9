"""The command line, end to end, on the short scenario."""
import importlib.metadata
import json
import subprocess
import sys

import pytest

from .conftest import SHORT

KEYS = {"mean_delay_s", "mean_travel_time_s", "mean_waiting_s", "mean_stops", "throughput_veh",
        "teleports", "safety_violations"}


def citybrain(*args):
    return subprocess.run([sys.executable, "-m", "citybrain.cli", *args], capture_output=True, text=True)


def test_compare_prints_table_and_writes_json_and_plot(tmp_path):
    out, plot = tmp_path / "report.json", tmp_path / "charts" / "compare.png"
    run = citybrain("compare", str(SHORT), "--end", "150", "--json", str(out), "--plot", str(plot))
    assert run.returncode == 0, run.stderr
    report = json.loads(out.read_text())
    assert report["scenario"] == "grid3x3-short" and report["end_s"] == 150
    assert report["detectors"] == "lanes"      # auto, with no detectors in the scenario
    assert list(report["controllers"]) == ["fixed", "actuated", "maxpressure", "citybrain"]
    for name, result in report["controllers"].items():
        assert KEYS <= set(result), name
        assert result["throughput_veh"] > 0
        assert name in run.stdout
        # The time series: a sample a minute and one at the end, ending on the run's own figures.
        series = result["series"]
        assert series["time_s"] == [0.0, 60.0, 120.0, 150.0]
        assert series["arrived_veh"][-1] == result["throughput_veh"]
        assert series["mean_delay_so_far_s"][-1] == pytest.approx(result["mean_delay_s"], abs=0.01)
        assert max(series["queued_veh"]) > 0
    for name in ("maxpressure", "citybrain"):
        assert report["controllers"][name]["safety_violations"] == 0
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_simulate_traci_backend_matches_libsumo(tmp_path):
    # --sumo-home runs another installation's bin/sumo through TraCI; here a wrapper around ours,
    # which notes that it ran.
    from citybrain.sumo_home import sumo_binary
    home, ran = tmp_path / "other-sumo", tmp_path / "ran.txt"
    (home / "bin").mkdir(parents=True)
    wrapper = home / "bin" / "sumo"
    wrapper.write_text(f'#!/bin/sh\necho "$@" >> {ran}\nexec {sumo_binary("sumo")} "$@"\n')
    wrapper.chmod(0o755)
    results = {}
    for label, flags in (("libsumo", ["--backend", "libsumo"]), ("traci", ["--backend", "traci"]),
                         ("sumo-home", ["--sumo-home", str(home)])):
        out = tmp_path / f"{label}.json"
        run = citybrain("simulate", str(SHORT), "--controller", "citybrain", *flags, "--json", str(out))
        assert run.returncode == 0, run.stderr
        report = json.loads(out.read_text())
        results[label] = report["controllers"]["citybrain"]
        assert report["sumo_version"] == importlib.metadata.version("eclipse-sumo")
    assert "--seed 42" in ran.read_text()     # the wrapper ran, once per simulation
    for key in KEYS:
        assert results["libsumo"][key] == results["traci"][key] == results["sumo-home"][key], key


def test_sumo_home_needs_traci(tmp_path):
    run = citybrain("simulate", str(SHORT), "--backend", "libsumo", "--sumo-home", str(tmp_path))
    assert run.returncode == 2
    assert "traci" in run.stderr and "Traceback" not in run.stderr


def test_broken_scenario_gives_clear_error(tmp_path):
    cfg = tmp_path / "bad.sumocfg"
    cfg.write_text('<configuration><input><net-file value="missing.net.xml"/></input></configuration>')
    run = citybrain("simulate", str(cfg))
    assert run.returncode == 2
    assert "missing.net.xml" in run.stderr and "Traceback" not in run.stderr


def test_unknown_controller_is_refused():
    run = citybrain("compare", str(SHORT), "--controllers", "fixed,psychic")
    assert run.returncode == 2 and "psychic" in run.stderr
