"""Signal programs from a scenario's additional files: compiled as SUMO runs them,
played by our engine exactly as SUMO plays them, and bad ones refused by name."""
import numpy as np
import pytest

from citybrain.network import NetworkError, load_scenario_network
from citybrain.run import RunOptions, simulate_in_processes
from citybrain.scenario import ScenarioError, load_scenario

from .city_programs import CITY_PHASES, CYCLE_S, SIGNALS, city_scenario, programs_xml


def test_the_additional_files_program_replaces_the_nets(tmp_path):
    network = load_scenario_network(load_scenario(city_scenario(tmp_path)))
    assert network.signal_ids == tuple(SIGNALS)
    assert network.programs[0] == tuple((s, float(d), float(lo), float(hi)) for s, d, lo, hi in CITY_PHASES)
    np.testing.assert_array_equal(network.program_offset_s, [11.0 * k for k in range(9)])
    assert (network.program_cycle_s == CYCLE_S).all()
    # The 2 s left release and the interim with greens are not phases of their own.
    assert network.phase_states[:3] == ("GGGgrrrrGGGgrrrr", "rrrGrrrrrrrGrrrr", "rrrrGGGgrrrrGGGg")
    plan = slice(network.plan_ptr[0], network.plan_ptr[1])
    np.testing.assert_array_equal(network.plan_phase[plan], [0, 1, 2])
    np.testing.assert_array_equal(network.plan_green_s[plan], [25, 10, 25])      # 20 + 5 s: one green
    np.testing.assert_array_equal(network.plan_min_s[plan], [15, 6, 10])
    np.testing.assert_array_equal(network.plan_max_s[plan], [45, 20, 45])
    np.testing.assert_array_equal(network.plan_end_s[plan], [25, 38, 68])

    def interim(a, b):
        t = network.transition(0, a, b)
        return [(network.interim_states[k], network.interim_s[k])
                for k in range(network.interim_ptr[t], network.interim_ptr[t + 1])]

    assert interim(0, 1) == [("yyyGrrrryyyGrrrr", 3.0)]
    assert interim(2, 0) == [("rrrryyyGrrrryyyG", 3.0), ("rrrrrrrGrrrrrrrG", 2.0), ("rrrrrrryrrrrrrry", 3.0),
                             ("rrrrrrrrrrrrrrrr", 2.0)]
    assert interim(0, 2) == []          # not a change the program makes: our yellow and all-red
    assert network.all_red_s[0] == 2.0 and network.yellow_s[0] == 3.0


@pytest.mark.parametrize("begin_s", [0.0, 100.0])
def test_our_engine_plays_the_program_exactly_as_sumo_does(tmp_path, begin_s):
    """`plan` (the program run by our engine and safety layer) and `fixed` (SUMO
    running it) give the same trips to the last digit, offsets and interims included."""
    config = city_scenario(tmp_path, begin_s=begin_s, end_s=begin_s + 300)
    fixed, plan = simulate_in_processes([(str(config), name, RunOptions()) for name in ("fixed", "plan")], 2)
    assert fixed["throughput_veh"] > 50
    for key in ("resco_delay_s", "mean_delay_s", "throughput_veh", "unfinished_veh", "mean_stops"):
        assert plan[key] == fixed[key], key
    assert plan["safety_violations"] == fixed["safety_violations"] == 0


def _with_program(tmp_path, text: str):
    config = city_scenario(tmp_path)
    (tmp_path / "city.tls.xml").write_text(text)
    return load_scenario(config)


def test_a_program_for_an_unknown_signal_is_refused_by_name(tmp_path):
    scenario = _with_program(tmp_path, programs_xml().replace('id="B1"', 'id="nowhere"'))
    with pytest.raises(NetworkError, match=r"city\.tls\.xml: <tlLogic id='nowhere'.*no traffic light 'nowhere'"):
        load_scenario_network(scenario)


def test_a_program_with_a_wrong_state_length_is_refused_by_name(tmp_path):
    scenario = _with_program(tmp_path, programs_xml().replace('state="rrrGrrrrrrrGrrrr"', 'state="rrrG"', 1))
    with pytest.raises(NetworkError, match=r"city\.tls\.xml: <tlLogic id='A0'.*different lengths"):
        load_scenario_network(scenario)


def test_a_program_without_green_is_refused_by_name(tmp_path):
    text = programs_xml()
    for state, *_ in CITY_PHASES:
        text = text.replace(f'state="{state}"', f'state="{"r" * 16}"')
    with pytest.raises(NetworkError, match=r"city\.tls\.xml: <tlLogic id='A0'.*no green phase"):
        load_scenario_network(_with_program(tmp_path, text))


def test_a_phase_without_a_duration_is_refused_by_name(tmp_path):
    scenario = _with_program(tmp_path, programs_xml().replace('duration="10"', 'duration="ten"', 1))
    with pytest.raises(ScenarioError, match=r"city\.tls\.xml: <tlLogic id='A0'.*numeric duration"):
        scenario.signal_programs()


def test_conflicting_protected_greens_in_a_program_are_made_permissive(tmp_path):
    """A program greening both roads' through traffic 'G' at once: SUMO would show it,
    our compiler demotes the yielding links to 'g' and says so."""
    text = programs_xml().replace('state="GGGgrrrrGGGgrrrr"', 'state="GGGgGGGgGGGgrrrr"')
    network = load_scenario_network(_with_program(tmp_path, text))
    assert network.repairs and "G -> g" in network.repairs[0]
    assert network.program_unsafe.all()
    for state in network.phase_states + network.interim_states:
        protected = np.array([ch == "G" for ch in state])
        assert not (np.outer(protected, protected) & network.conflict_matrix(0)).any()


def test_a_program_that_ends_a_green_without_yellow_is_unsafe(tmp_path):
    """The city's programs are sound; one whose left turns go from green straight to
    red (the interim's yellow replaced by red) is not, and is never run as written."""
    assert not load_scenario_network(load_scenario(city_scenario(tmp_path / "sound"))).program_unsafe.any()
    text = programs_xml().replace('state="rrryrrrrrrryrrrr"', 'state="rrrrrrrrrrrrrrrr"')
    network = load_scenario_network(_with_program(tmp_path / "unsafe", text))
    assert network.program_unsafe.all() and not network.repairs


def test_a_signal_left_to_its_own_controller_runs_the_program_repaired(tmp_path):
    """An actuated city program with foes in protected green and a green ended
    without yellow: SUMO runs it as written for `fixed` (and shows both), and for
    signals citybrain leaves to their own controller (none counts every approach
    here) it runs the program with our repairs, and shows neither."""
    text = (programs_xml(kind="actuated").replace('state="GGGgrrrrGGGgrrrr"', 'state="GGGGrrrrGGGGrrrr"')
            .replace('state="yyyGrrrryyyGrrrr"', 'state="gyyGrrrryyyGrrrr"'))
    network = load_scenario_network(_with_program(tmp_path, text))
    assert not network.program_unsafe.any() and all(network.program_state_repairs)
    assert any("g -> y" in line for line in network.repairs)
    options = RunOptions(detectors="sparse", layout_seed=0, end_s=200)
    fixed, citybrain = simulate_in_processes([(str(tmp_path / "city.sumocfg"), name, options)
                                              for name in ("fixed", "citybrain")], 2)
    assert fixed["safety"]["conflicting_green_steps"] > 0 and fixed["safety"]["missing_yellow"] > 0
    assert citybrain["signals_local"] == network.n_signals
    assert citybrain["program_repairs"] == list(network.repairs)
    assert citybrain["safety_violations"] == 0, citybrain["safety"]


def test_a_waut_selects_the_program_in_force_at_the_start(tmp_path):
    config = city_scenario(tmp_path, begin_s=500.0, end_s=600.0, extra_additional="waut.xml")
    night = programs_xml("night").replace('duration="20"', 'duration="40"')
    (tmp_path / "waut.xml").write_text(night.replace("</additional>", """
  <WAUT refTime="0" id="w" startProg="city">
    <wautSwitch time="400" to="night"/>
    <wautSwitch time="900" to="city"/>
  </WAUT>
  <wautJunction wautID="w" junctionID="A0"/>
</additional>"""))
    programs = load_scenario(config).signal_programs()
    assert programs["A0"].program_id == "night" and programs["B0"].program_id == "night"
    assert programs["A0"].phases[0][1] == 40.0
    early = load_scenario(config).signal_programs(at_s=100.0)
    assert early["A0"].program_id == "city" and early["B0"].program_id == "night"


@pytest.mark.parametrize("kind", ["static", "actuated"])
def test_signals_with_an_unobserved_approach_run_their_plan(tmp_path, kind):
    """The scenario's own loops cover only signal A0's approaches: the other eight
    signals run the city's program, and the run reports it: a fixed-time one as
    our plan, an actuated one under its own controller."""
    probe = load_scenario_network(load_scenario(city_scenario(tmp_path / "probe")))
    a0 = set(probe.move_in_lane[probe.move_signal == 0].tolist())
    loops = "".join(f'<inductionLoop id="loop{lane}" lane="{probe.lane_ids[lane]}" pos="-3" period="1" file="NUL"/>'
                    for lane in sorted(a0))
    (tmp_path / "loops.add.xml").write_text(f"<additional>{loops}</additional>")
    config = city_scenario(tmp_path, end_s=200, extra_additional="loops.add.xml", kind=kind)
    citybrain, = simulate_in_processes([(str(config), "citybrain", RunOptions(detectors="auto"))], 1)
    assert citybrain["detectors"] == "scenario"
    assert (citybrain["signals_on_plan"], citybrain["signals_local"]) == ((8, 0) if kind == "static" else (0, 8))
    assert citybrain["observed_lane_share"]["A0"] == 1.0 and citybrain["observed_lane_share"]["B1"] == 0.0
    assert citybrain["safety_violations"] == 0


def test_phases_a_program_never_reaches_are_not_part_of_its_cycle(tmp_path):
    """`next` sends the program back to phase 0 after its last all-red; the two phases
    after it (a special sequence, as real programs keep them) never show. The plan
    leaves them out, and still plays the program exactly as SUMO does. (With offsets,
    SUMO places a program's start on the sum of all its phases, reached or not; the
    plan on its cycle. The first cycle can then differ; offsets are 0 here.)"""
    text = programs_xml(offsets=[0] * len(SIGNALS))
    last = f'<phase state="{"r" * 16}" duration="2" minDur="2" maxDur="2"/>\n  </tlLogic>'
    assert text.count(last) == len(SIGNALS)
    text = text.replace(last, f'<phase state="{"r" * 16}" duration="2" minDur="2" maxDur="2" next="0"/>\n'
                              f'    <phase state="GGGGGGGGrrrrrrrr" duration="30"/>\n'
                              f'    <phase state="yyyyyyyyrrrrrrrr" duration="3"/>\n  </tlLogic>')
    config = city_scenario(tmp_path, end_s=300)
    (tmp_path / "city.tls.xml").write_text(text)
    network = load_scenario_network(load_scenario(config))
    assert (network.program_cycle_s == CYCLE_S).all()
    assert "GGGGGGGGrrrrrrrr" not in network.phase_states
    fixed, plan = simulate_in_processes([(str(config), name, RunOptions()) for name in ("fixed", "plan")], 2)
    for key in ("resco_delay_s", "throughput_veh", "unfinished_veh"):
        assert plan[key] == fixed[key], key


def test_a_next_beyond_the_program_is_refused_by_name(tmp_path):
    text = programs_xml().replace('duration="2" minDur="2" maxDur="2"/>\n  </tlLogic>',
                                  'duration="2" minDur="2" maxDur="2" next="40"/>\n  </tlLogic>', 1)
    with pytest.raises(NetworkError, match=r"city\.tls\.xml: <tlLogic id='A0'.*next names phase 40"):
        load_scenario_network(_with_program(tmp_path, text))
