"""What a run leaves behind and how it fails: outputs the scenario asks for land in
the run's folder, never the scenario's, and SUMO's refusals reach the user as one
line naming the scenario, across the process boundary too."""
import subprocess
import sys

import pytest

from citybrain.run import RunOptions, simulate, simulate_in_processes
from citybrain.sumo_adapter import SimulationError

from .city_programs import city_scenario


def test_outputs_the_scenario_asks_for_go_to_the_run_folder(tmp_path):
    scenario = tmp_path / "scenario"
    (scenario).mkdir()
    (scenario / "edges.add.xml").write_text('<additional><edgeData id="e" file="edges.xml" period="60"/>'
                                            '</additional>')
    config = city_scenario(scenario, end_s=120, extra_additional="edges.add.xml")
    config.write_text(config.read_text().replace(
        "</configuration>", '<output><summary-output value="summary.xml"/></output></configuration>'))
    before = set(scenario.iterdir())
    result = simulate(config, "citybrain", RunOptions(output_dir=str(tmp_path / "out")))
    assert set(scenario.iterdir()) == before
    run_folder = tmp_path / "out" / "scenario-citybrain-seed42"
    assert (run_folder / "scenario-edges.xml").stat().st_size > 0
    assert (run_folder / "scenario-summary.xml").stat().st_size > 0
    assert (run_folder / "sumo.log").is_file()
    assert isinstance(result["sumo_messages"], dict)


def test_a_run_sumo_refuses_fails_with_one_line_naming_the_scenario(tmp_path):
    (tmp_path / "bad.add.xml").write_text('<additional><inductionLoop id="d" lane="no_such_lane_0" pos="5" '
                                          'period="60" file="NUL"/></additional>')
    config = city_scenario(tmp_path, end_s=60, extra_additional="bad.add.xml")
    with pytest.raises(SimulationError, match=r"city\.sumocfg: SUMO would not run it: .*no_such_lane_0"):
        simulate_in_processes([(str(config), "fixed", RunOptions())], 1)
    cli = subprocess.run([sys.executable, "-m", "citybrain.cli", "compare", str(config), "--controllers", "fixed,plan"],
                         capture_output=True, text=True, timeout=300)
    assert cli.returncode == 2
    last = cli.stderr.strip().splitlines()[-1]
    assert last.startswith("citybrain: error: ") and "city.sumocfg" in last and "Traceback" not in cli.stderr
