"""Our own networks are reproducible: the committed files are what the script makes."""
import subprocess
import sys

from .conftest import ROOT


def test_generator_reproduces_committed_small_grid(tmp_path):
    subprocess.run([sys.executable, str(ROOT / "networks" / "generate.py"), "grid3x3-short", "grid3x3-ev",
                    "--out", str(tmp_path)], check=True, capture_output=True)
    for relative in ("networks/grid3x3/grid3x3.net.xml", "scenarios/grid3x3-short/grid3x3-short.rou.xml",
                     "scenarios/grid3x3-ev/grid3x3-ev.sumocfg", "scenarios/grid3x3-ev/emergency.rou.xml"):
        assert (tmp_path / relative).read_bytes() == (ROOT / relative).read_bytes(), relative


def test_berlin_scenario_builds_and_runs(tmp_path):
    """SUMO's own Berlin piece: pedestrian crossings, rail signals, joined junctions."""
    from citybrain.run import RunOptions, simulate

    subprocess.run([sys.executable, str(ROOT / "networks" / "generate.py"), "berlin", "--out", str(tmp_path)],
                   check=True, capture_output=True)
    result = simulate(tmp_path / "scenarios" / "berlin", "citybrain", RunOptions(end_s=300))
    assert result["signals"] == 15
    assert result["throughput_veh"] > 0
    assert result["safety_violations"] == 0, result["safety"]


def test_rilsa_scenarios_build_and_run(tmp_path):
    """SUMO's four RiLSA intersections: the guideline's fixed plan as an additional program."""
    from citybrain.run import RunOptions, simulate

    subprocess.run([sys.executable, str(ROOT / "networks" / "generate.py"), "rilsa", "--out", str(tmp_path)],
                   check=True, capture_output=True)
    for example in (1, 2, 3, 4):
        result = simulate(tmp_path / "scenarios" / f"rilsa{example}", "citybrain", RunOptions(end_s=300))
        assert result["signals"] == 1
        assert result["throughput_veh"] > 0
        assert result["safety_violations"] == 0, result["safety"]
