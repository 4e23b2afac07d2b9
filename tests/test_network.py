"""The network compiler on our grid, on RESCO maps, and on broken inputs."""
import numpy as np
import pytest

from citybrain.kernels import STAGE_ALL_RED, STAGE_GREEN, STAGE_YELLOW
from citybrain.network import NetworkError, load_network

from .conftest import GRID10_NET


@pytest.fixture(scope="module")
def grid():
    return load_network(GRID10_NET)


def test_grid_has_100_four_phase_signals(grid):
    assert grid.n_signals == 100
    assert set(np.diff(grid.phase_ptr).tolist()) == {4}      # N-S, N-S left, E-W, E-W left
    assert len(grid.move_in_lane) == 100 * 16                # 4 legs x (right, 2 through, left)
    assert set(grid.signal_n_links.tolist()) == {16}
    assert set(grid.yellow_s.tolist()) == {3.0}
    assert grid.graph.number_of_nodes() == len(grid.edge_ids)


def test_grid_conflicts_separate_crossing_streets(grid):
    signal = grid.signal_ids.index("C3")
    matrix = grid.conflict_matrix(signal)
    assert (matrix == matrix.T).all() and not matrix.diagonal().any()
    phases = [grid.phase_states[p] for p in grid.phases_of(signal)]
    ns_through = np.array([c == "G" for c in phases[0]])
    ew_through = np.array([c == "G" for c in phases[2]])
    # Every N-S through link crosses some E-W through link...
    assert (matrix[np.ix_(ns_through, ew_through)].any(axis=1)).all()
    # ...and no phase of the net's own program puts two foes in protected green.
    for state in phases:
        g = np.array([c == "G" for c in state])
        assert not (matrix & np.outer(g, g)).any()


def test_clearance_state_strings(grid):
    signal = grid.signal_ids.index("C3")
    phase0 = grid.phase_states[grid.phase_ptr[signal]]
    assert grid.signal_state(signal, STAGE_GREEN, 0, 2) == phase0
    yellow = grid.signal_state(signal, STAGE_YELLOW, 0, 2)
    red = grid.signal_state(signal, STAGE_ALL_RED, 0, 2)
    for now, y, r in zip(phase0, yellow, red):
        assert (y, r) == (("y", "r") if now in "Gg" else (now, now))
    # N-S through -> N-S protected left: lefts go from permissive g to protected G, so
    # they stay green; only the through links clear.
    to_left = grid.signal_state(signal, STAGE_YELLOW, 0, 1)
    left_phase = grid.phase_states[grid.phase_ptr[signal] + 1]
    for now, y, then in zip(phase0, to_left, left_phase):
        assert y == ("y" if now == "G" and then == "r" else now)


def test_transitions_need_clearance_unless_greens_only_grow(grid):
    n = 4
    block = grid.needs_clearance[:n * n].reshape(n, n)
    assert not block.diagonal().any()
    assert block[0, 2] and block[2, 0] and block[1, 0]


@pytest.mark.parametrize("name,signals,phases,movements", [
    ("cologne1", 1, 4, 20),
    ("ingolstadt1", 1, 3, 8),
    ("cologne8", 8, 25, 103),
    ("grid4x4", 16, 128, 576),
])
def test_resco_maps(resco, name, signals, phases, movements):
    net = load_network(resco / name / f"{name}.net.xml")
    assert (net.n_signals, net.n_phases, len(net.move_in_lane)) == (signals, phases, movements)
    assert net.conflict.any()
    for signal in range(net.n_signals):
        matrix = net.conflict_matrix(signal)
        for p in net.phases_of(signal):
            g = np.array([c == "G" for c in net.phase_states[p]])
            assert not (matrix & np.outer(g, g)).any()


def test_cologne1_takes_its_yellow_from_the_program(resco):
    net = load_network(resco / "cologne1" / "cologne1.net.xml")
    assert net.yellow_s.tolist() == [5.0]


def test_upstream_zone_reaches_past_the_turn_bay(grid):
    lane = grid.lane_ids.index("C4C3.140.00_1")
    members = grid.zone_lane[grid.zone_ptr[lane]:grid.zone_ptr[lane + 1]]
    assert {grid.lane_ids[m] for m in members} >= {"C4C3.140.00_1", "C4C3_1"}


def test_missing_file(tmp_path):
    with pytest.raises(NetworkError, match="not found"):
        load_network(tmp_path / "none.net.xml")


def test_truncated_xml(tmp_path):
    broken = tmp_path / "broken.net.xml"
    broken.write_text(GRID10_NET.read_text()[:5000])
    with pytest.raises(NetworkError, match="broken.net.xml"):
        load_network(broken)


def test_net_without_signals(tmp_path):
    net = tmp_path / "plain.net.xml"
    net.write_text('<net version="1.20"><location netOffset="0,0" convBoundary="0,0,1,1" '
                   'origBoundary="0,0,1,1" projParameter="!"/></net>')
    with pytest.raises(NetworkError, match="no traffic light"):
        load_network(net)


def test_inconsistent_program(tmp_path):
    text = GRID10_NET.read_text()
    bad = text.replace('state="GGGgrrrrGGGgrrrr"', 'state="GGGg"', 1)
    assert bad != text
    path = tmp_path / "bad.net.xml"
    path.write_text(bad)
    with pytest.raises(NetworkError, match="different lengths"):
        load_network(path)
