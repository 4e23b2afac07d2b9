"""Do no harm: the supervisor hands a signal back to its plan where adaptive
control visibly starves an approach, and takes it back after the hold."""
import numpy as np
import pytest

from citybrain.config import SupervisorConfig
from citybrain.engine import Engine
from citybrain.kernels import STAGE_GREEN
from citybrain.network import load_network, load_scenario_network
from citybrain.run import RunOptions, simulate_controller
from citybrain.safety import SafetyMonitor
from citybrain.scenario import load_scenario
from citybrain.sumo_adapter import SumoOptions, SumoSimulation
from citybrain.supervisor import REASONS, Supervisor

from .city_programs import GRID3_NET, programs_xml
from .conftest import SHORT


@pytest.fixture(scope="module")
def net():
    return load_network(load_scenario(SHORT).net_file)


def starved_lane(net, signal):
    """An approach lane of `signal` that its phase 0 does not green."""
    supervisor = Supervisor(net)
    phase, lane = net.phase_lanes
    served = set(lane[phase == net.phase_ptr[signal]].tolist())
    return next(int(lane) for lane in supervisor.entry_lane[supervisor.entry_signal == signal]
                if lane not in served and net.lane_plan_share[lane] > 0)


def test_a_starved_approach_is_handed_back_and_taken_back(net):
    config = SupervisorConfig(hold_s=300.0)
    supervisor = Supervisor(net, config)
    signal = 4
    lane = starved_lane(net, signal)
    halting = np.zeros(net.n_lanes)
    green_phase = np.zeros(net.n_signals, np.int32)     # phase 0 everywhere, all the time
    stage = np.full(net.n_signals, STAGE_GREEN, np.int8)
    handed_at = []
    for t in range(2000):
        on_plan = supervisor.review(float(t), 1.0, halting, green_phase, stage)
        if on_plan[signal] and (not handed_at or handed_at[-1][1] is not None):
            handed_at.append((t, None))
        if not on_plan[signal] and handed_at and handed_at[-1][1] is None:
            handed_at[-1] = (handed_at[-1][0], t)
        # The lane's queue grows by one vehicle every 5 s while adaptive control holds phase 0,
        # and drains while the plan runs.
        halting[lane] = max(halting[lane] + (-0.5 if on_plan[signal] else 0.2), 0.0)
    assert len(handed_at) >= 2 and REASONS[supervisor.reason[signal]] in ("starved", "spill_back")
    (first_on, first_off), (second_on, _) = handed_at[:2]
    assert first_off - first_on == 300 and second_on > first_off      # the plan for the hold, then back
    assert supervisor.next_hold_s[signal] >= 4 * config.hold_s           # each repeat doubles the hold
    assert supervisor.handovers[signal] == len(handed_at) and not np.delete(supervisor.handovers, signal).any()
    report = supervisor.report()
    assert report["handovers"] == len(handed_at) and list(report["signals"]) == [net.signal_ids[signal]]


def test_a_lane_the_plan_would_fail_too_is_not_handed_back(net):
    """Queues rising on a lane that gets at least its plan share of green: adaptive
    control is not the cause (the demand is beyond what the plan serves)."""
    supervisor = Supervisor(net)
    halting = np.zeros(net.n_lanes)
    stage = np.full(net.n_signals, STAGE_GREEN, np.int8)
    # Each signal shows its plan's greens in turn, each for its plan green time (no clearance
    # between: every lane gets at least its plan share).
    windows = []
    for signal in range(net.n_signals):
        steps = slice(net.plan_ptr[signal], net.plan_ptr[signal + 1])
        windows.append((net.plan_phase[steps], np.cumsum(net.plan_green_s[steps])))
    for t in range(3000):
        green_phase = np.array([phases[np.searchsorted(ends, t % ends[-1], side="right")]
                                for phases, ends in windows], dtype=np.int32)
        halting += 0.05                                            # every queue grows
        on_plan = supervisor.review(float(t), 1.0, halting, green_phase, stage)
        assert not on_plan.any(), t


def starving_scenario(folder, additional: str = ""):
    """The 3x3 grid with a steady north-south and west-east flow for 1,500 s (the
    net's own programs, or those of `additional`); returns its .sumocfg."""
    (folder / "flows.rou.xml").write_text("""<routes>
    <flow id="ns" begin="0" end="1500" vehsPerHour="500" departLane="best" departSpeed="max"
          from="top1B2" to="B0bottom1"/>
    <flow id="we" begin="0" end="1500" vehsPerHour="300" departLane="best" departSpeed="max"
          from="left1A1" to="C1right1"/>
</routes>
""")
    extra = f'<additional-files value="{additional}"/>' if additional else ""
    config = folder / "starve.sumocfg"
    config.write_text(f"""<configuration>
    <input><net-file value="{GRID3_NET}"/><route-files value="flows.rou.xml"/>{extra}</input>
    <time><begin value="0"/><end value="1500"/></time>
</configuration>
""")
    return config


class HoldFirstPhase:
    """A deliberately harmful controller: phase 0 forever."""

    name = "hold-first-phase"

    def decide(self, frame, signals, requested):
        requested[:] = 0


def test_supervisor_hands_a_harmful_controller_back_to_the_plan_in_sumo(tmp_path):
    """The grid with a steady crossing flow and a controller that never serves it:
    the supervisor hands the starved signals to their plan, which serves the flow."""
    config = starving_scenario(tmp_path)
    results = {}
    for enabled in (False, True):
        options = RunOptions(detectors="lanes", supervisor=SupervisorConfig(enabled=enabled))
        results[enabled] = simulate_controller(config, lambda net: HoldFirstPhase(), options)
    unsupervised, supervised = results[False], results[True]
    assert unsupervised["supervisor"] is None
    report = supervised["supervisor"]
    assert report["handovers"] >= 1 and report["plan_signal_s"] > 0
    assert supervised["safety_violations"] == 0
    assert supervised["resco_delay_s"] < unsupervised["resco_delay_s"]
    assert supervised["throughput_veh"] > unsupervised["throughput_veh"]


def test_an_actuated_signal_is_handed_to_its_own_controller_and_taken_back_in_sumo(tmp_path):
    """The same starving controller on the city's actuated programs: the supervisor
    hands the starved signals to their own controller (SUMO runs the city's program
    again, from the green they show), takes them back after the hold at a green of
    that program, and no step shows anything our safety rules forbid."""
    (tmp_path / "city.tls.xml").write_text(programs_xml(kind="actuated"))
    config = starving_scenario(tmp_path, additional="city.tls.xml")
    scenario = load_scenario(config)
    network = load_scenario_network(scenario)
    engine = Engine(network, HoldFirstPhase(), supervisor=SupervisorConfig(hold_s=200.0), own_controllers=True)
    monitor = SafetyMonitor(network, engine.timing.min_green_s, 1.0)
    programs = []
    with SumoSimulation(scenario, network, SumoOptions(detectors="lanes")) as sim:
        while sim.running():
            sim.apply(engine.step(sim.read_frame()))
            sim.advance(1.0)
            shown = sim.read_signal_states()
            monitor.observe(shown)
            engine.observe_shown(shown, 1.0)
            programs.append([sim._api.trafficlight.getProgram(s) != "online" for s in network.signal_ids])
    own = np.array(programs)
    released = np.flatnonzero(own.any(axis=0))
    assert released.size >= 1 and engine.supervisor.handovers[released].min() >= 1
    back = [signal for signal in released if (np.diff(own[:, signal].astype(int)) == -1).any()]
    assert back, "no signal was taken back from its own controller"
    assert monitor.report.violations == 0, monitor.report.as_dict()
