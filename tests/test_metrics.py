"""Trip metrics: arrived-vehicle figures and RESCO's every-vehicle delay, from SUMO's tripinfo."""
import pytest

from citybrain.metrics import read_tripinfo
from citybrain.run import RunOptions, simulate

from .conftest import SHORT


def trip(vehicle, arrival, time_loss, depart_delay, duration=100.0):
    return (f'<tripinfo id="{vehicle}" depart="0.00" departDelay="{depart_delay}" arrival="{arrival}" '
            f'duration="{duration}" waitingTime="5.00" waitingCount="1" timeLoss="{time_loss}"/>')


def test_arrived_figures_and_resco_delay_over_every_vehicle(tmp_path):
    path = tmp_path / "tripinfo.xml"
    path.write_text("<tripinfos>" + "".join([
        trip("a", "120.00", 10.0, 2.0),
        trip("b", "130.00", 20.0, 0.0),
        trip("late", "-1.00", 50.0, 10.0),      # still driving at the end
        trip("never", "-1.00", 0.0, 90.0),      # never departed
        trip("ev", "90.00", 1.0, 0.0),          # emergency vehicle: measured apart
    ]) + "</tripinfos>")
    trips, emergency = read_tripinfo(path, loaded_veh=5, emergency_ids=frozenset({"ev"}))
    assert trips.throughput_veh == 2 and trips.unfinished_veh == 2
    assert trips.mean_delay_s == pytest.approx((12 + 20) / 2)
    assert trips.resco_delay_s == pytest.approx((12 + 20 + 60 + 90) / 4)
    assert emergency.ev_count == 1 and emergency.ev_mean_delay_s == pytest.approx(1.0)


def test_resco_delay_counts_the_vehicles_still_driving_in_sumo():
    result = simulate(SHORT, "maxpressure", RunOptions(end_s=200))
    assert result["unfinished_veh"] > 0
    assert result["resco_delay_s"] > 0
    assert result["resco_delay_s"] != pytest.approx(result["mean_delay_s"])
