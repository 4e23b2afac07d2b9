"""Scenario files: what runs, and clear errors for what cannot."""
import pytest

from citybrain.scenario import ScenarioError, load_scenario

from .conftest import SHORT


def test_folder_and_file_load_the_same(tmp_path):
    a = load_scenario(SHORT)
    b = load_scenario(SHORT / "grid3x3-short.sumocfg")
    assert a == b and a.end_s == 300 and a.net_file.name == "grid3x3.net.xml"


def write_cfg(folder, body):
    cfg = folder / "s.sumocfg"
    cfg.write_text(body)
    return cfg


def test_missing_net_file_is_named(tmp_path):
    cfg = write_cfg(tmp_path, '<configuration><input><net-file value="gone.net.xml"/></input></configuration>')
    with pytest.raises(ScenarioError, match="gone.net.xml"):
        load_scenario(cfg)


def test_malformed_xml(tmp_path):
    cfg = write_cfg(tmp_path, "<configuration><input>")
    with pytest.raises(ScenarioError, match="not valid XML"):
        load_scenario(cfg)


def test_wrong_root(tmp_path):
    cfg = write_cfg(tmp_path, "<routes/>")
    with pytest.raises(ScenarioError, match="expected <configuration>"):
        load_scenario(cfg)


def test_sumo_configuration_root_and_clock_times_are_read(tmp_path):
    # What sumo --save-configuration writes since SUMO 1.20 (e.g. tools/game/fokr_bs_demo.sumocfg).
    net = SHORT.parent.parent / "networks" / "grid3x3" / "grid3x3.net.xml"
    cfg = write_cfg(tmp_path, f'<sumoConfiguration><input><net-file value="{net}"/></input>'
                              '<time><begin value="15:0:0"/><end value="1:16:0:30"/></time></sumoConfiguration>')
    scenario = load_scenario(cfg)
    assert (scenario.begin_s, scenario.end_s) == (15 * 3600.0, 86400.0 + 16 * 3600.0 + 30.0)


@pytest.mark.parametrize("begin", ["noon", "1:30", ""])
def test_a_time_that_is_not_one_is_named(tmp_path, begin):
    net = SHORT.parent.parent / "networks" / "grid3x3" / "grid3x3.net.xml"
    cfg = write_cfg(tmp_path, f'<configuration><input><net-file value="{net}"/></input>'
                              f'<time><begin value="{begin}"/></time></configuration>')
    with pytest.raises(ScenarioError, match="is not a time"):
        load_scenario(cfg)


def test_end_before_begin(tmp_path):
    net = SHORT.parent.parent / "networks" / "grid3x3" / "grid3x3.net.xml"
    cfg = write_cfg(tmp_path, f'<configuration><input><net-file value="{net}"/></input>'
                              '<time><begin value="100"/><end value="50"/></time></configuration>')
    with pytest.raises(ScenarioError, match="end"):
        load_scenario(cfg)


def test_folder_without_config(tmp_path):
    with pytest.raises(ScenarioError, match="exactly one .sumocfg"):
        load_scenario(tmp_path)


@pytest.mark.parametrize("body, problem", [
    ('<additional><inductionLoop id="d1" lane="A0A1_0"/></additional>', "numeric pos"),
    ('<additional><inductionLoop id="d1" lane="A0A1_0" pos="ten"/></additional>', "numeric pos"),
    ("<additional><inductionLoop", "not valid XML"),
])
def test_broken_detector_definitions_are_named(tmp_path, body, problem):
    net = load_scenario(SHORT).net_file
    (tmp_path / "detectors.add.xml").write_text(body)
    cfg = write_cfg(tmp_path, f'<configuration><input><net-file value="{net}"/>'
                              '<additional-files value="detectors.add.xml"/></input></configuration>')
    with pytest.raises(ScenarioError, match=problem) as error:
        load_scenario(cfg).induction_loops()
    assert "detectors.add.xml" in str(error.value)


def test_induction_loops_are_read_with_their_lane_and_position(tmp_path):
    net = load_scenario(SHORT).net_file
    (tmp_path / "d.add.xml").write_text('<additional><inductionLoop id="a" lane="L_0" pos="-5" file="NUL"/>'
                                        '<e1Detector id="b" lane="M_1" pos="12.5" file="NUL"/>'
                                        '<laneAreaDetector id="c" lane="M_1" pos="0" length="20"/></additional>')
    cfg = write_cfg(tmp_path, f'<configuration><input><net-file value="{net}"/>'
                              '<additional-files value="d.add.xml"/></input></configuration>')
    loops = load_scenario(cfg).induction_loops()
    assert [(loop.loop_id, loop.lane, loop.position_m) for loop in loops] == [("a", "L_0", -5.0), ("b", "M_1", 12.5)]
