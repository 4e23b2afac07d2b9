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


def test_end_before_begin(tmp_path):
    net = SHORT.parent.parent / "networks" / "grid3x3" / "grid3x3.net.xml"
    cfg = write_cfg(tmp_path, f'<configuration><input><net-file value="{net}"/></input>'
                              '<time><begin value="100"/><end value="50"/></time></configuration>')
    with pytest.raises(ScenarioError, match="end"):
        load_scenario(cfg)


def test_folder_without_config(tmp_path):
    with pytest.raises(ScenarioError, match="exactly one .sumocfg"):
        load_scenario(tmp_path)
