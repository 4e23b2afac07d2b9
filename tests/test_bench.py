"""Every `citybrain bench` subcommand at a tiny size, so none of them rots."""
import json
import pickle

import pytest

from citybrain.bench import cached_network

from .conftest import SHORT
from .test_cli import citybrain


def run_bench(tmp_path, *args):
    out = tmp_path / "bench.json"
    run = citybrain("bench", *args, "--cache", str(tmp_path / "cache"), "--json", str(out))
    assert run.returncode == 0, run.stderr
    return json.loads(out.read_text()), run.stdout


@pytest.mark.parametrize("controller", ["citybrain", "maxpressure"])
def test_bench_latency(tmp_path, controller):
    report, stdout = run_bench(tmp_path, "latency", "--sizes", "4", "--repeat", "50", "--controller", controller)
    assert report["controller"] == controller
    size = report["sizes"]["4"]
    assert size["signals"] == 4 and 0 < size["p50_us"] <= size["p99_us"] <= size["max_us"]
    assert size["numpy_p50_us"] > 0 and "numpy reference" in stdout


def test_bench_wire(tmp_path):
    report, _ = run_bench(tmp_path, "wire", "--sizes", "4", "--rate", "20", "--seconds", "0.5")
    size = report["sizes"]["4"]
    assert size["frames"] == 10 and size["answered"] == 10 and size["lost"] == 0 and size["p50_us"] > 0


def test_bench_scale(tmp_path):
    report, _ = run_bench(tmp_path, "scale", "--sizes", "4", "--seconds", "30")
    size = report["sizes"]["4"]
    assert size["signals"] == 4 and size["simulated_s"] == 30
    assert 0 < size["engine_s_per_sim_s"] < size["wall_per_sim_s"] and 0 < size["engine_share"] < 1


def test_bench_scenarios(tmp_path):
    out = tmp_path / "out"
    report, stdout = run_bench(tmp_path, "scenarios", "--scenario", str(SHORT), "--end", "60",
                               "--controllers", "fixed,citybrain", "--seeds", "1,2", "--min-all-red", "1",
                               "--out", str(out))
    result = report["scenarios"]["grid3x3-short"]["citybrain"]
    assert len(result["delay_by_seed"]) == 2 and result["safety_violations"] == 0
    assert result["emergency_braking"] >= 0
    assert report["min_all_red_s"] == 1 and "all-red at least 1 s" in stdout
    # One row per table; the arrived-vehicle table ends with the brakings of each controller.
    rows = [line for line in stdout.splitlines() if line.startswith("| grid3x3-short |")]
    assert len(rows) == 2 and rows[0].rstrip(" |").split("|")[-1].count("/") == 1
    assert (out / "scenarios.md").exists() and (out / "scenarios.png").stat().st_size > 1000


def test_bench_emergency(tmp_path):
    out = tmp_path / "out"
    scenario = SHORT.parent / "grid3x3-ev"
    report, stdout = run_bench(tmp_path, "emergency", "--route-signals", "6", "--repeat", "300",
                               "--scenario", str(scenario), "--seeds", "1", "--out", str(out))
    planning = report["planning"]
    assert planning["route_signals"] >= 6 and 0 < planning["p50_us"] <= planning["p99_us"]
    runs = report["scenarios"]["grid3x3-ev"]
    assert runs["on"]["ev_count"] == 2 and runs["off"]["ev_count"] == 2
    assert runs["on"]["not_green"] < runs["off"]["not_green"]
    assert "| grid3x3-ev |" in stdout and (out / "emergency.md").exists()


def test_a_cached_network_missing_a_field_is_rebuilt(tmp_path):
    """A network pickled by an older citybrain (here: one field short) is compiled again."""
    _, network = cached_network(4, tmp_path)
    pickled = next(tmp_path.glob("grid4*.pickle"))
    stale = pickle.loads(pickled.read_bytes())
    del stale.__dict__["ends_crossing"]
    pickled.write_bytes(pickle.dumps(stale))
    _, again = cached_network(4, tmp_path)
    assert (again.ends_crossing == network.ends_crossing).all()
