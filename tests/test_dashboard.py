"""The live dashboard: its JSON and event stream on loopback, and the page in
real headless Chromium against a paced SUMO run (`.ci/run` installs Debian's
chromium and chromium-driver)."""
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.request

import numpy as np
import pytest

from citybrain.dashboard import DashboardServer
from citybrain.live import LiveView
from citybrain.network import load_network

from .conftest import ROOT

EV_SCENARIO = ROOT / "scenarios" / "grid3x3-ev"
ARTIFACTS = ROOT / "results" / "test-artifacts"
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@pytest.fixture(scope="module")
def net():
    return load_network(ROOT / "networks" / "grid3x3" / "grid3x3.net.xml")


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def test_state_is_empty_before_the_first_decision_then_live(net):
    live = LiveView(net, interval_s=0.0)
    server = DashboardServer(live, port=0)
    try:
        empty = get_json(server.url + "api/state")
        assert empty["version"] == 0 and empty["time_s"] is None and empty["signals"] == 9
        phase = np.arange(9) % 4
        live.offer(12.0, phase, np.zeros(9, np.int8), halting=np.ones(net.n_lanes), kpis={"queued_veh": 5})
        state = get_json(server.url + "api/state")
        assert state["phase"] == phase.tolist() and state["time_s"] == 12.0
        assert state["kpis"] == {"queued_veh": 5.0} and len(state["history"]) == 1
        network = get_json(server.url + "api/network")
        assert len(network["signals"]) == 9 and len(network["edges"]) == len(net.edge_ids)
        assert len(network["approaches"]) == 9 and all(len(p) == 4 for p in network["approaches"])
    finally:
        server.close()


def test_event_streams_end_when_their_clients_leave(net):
    live = LiveView(net, interval_s=0.0)
    server = DashboardServer(live, port=0)
    try:
        streams = [urllib.request.urlopen(server.url + "api/events", timeout=10) for _ in range(3)]
        for t in range(3):
            live.offer(float(t), np.zeros(9, np.int32), np.zeros(9, np.int8))
        for stream in streams:
            line = stream.readline()
            assert line.startswith(b"data: ") and json.loads(line[6:])["signals"] == 9
        assert server.clients == 3
        for stream in streams:
            stream.close()
        deadline = time.monotonic() + 10
        while server.clients and time.monotonic() < deadline:
            live.offer(time.monotonic(), np.zeros(9, np.int32), np.zeros(9, np.int8))  # writes find them gone
            time.sleep(0.1)
        assert server.clients == 0
    finally:
        server.close()


def browser():
    if not (CHROMIUM and CHROMEDRIVER):
        if os.environ.get("CI"):
            pytest.fail("chromium and chromedriver must be installed in CI (.ci/run installs them)")
        pytest.skip("chromium/chromedriver not installed (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,900"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def wait_for(condition, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_page_in_chromium_follows_a_running_simulation():
    run = subprocess.Popen([sys.executable, "-m", "citybrain.cli", "simulate", str(EV_SCENARIO), "--dashboard", "0",
                            "--pace", "10"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    driver = None
    try:
        url = None
        for line in run.stderr:
            match = re.search(r"dashboard (http://\S+)", line)
            if match:
                url = match.group(1)
                break
        assert url, f"no dashboard line (exit {run.poll()})"
        threading.Thread(target=run.stderr.read, daemon=True).start()
        driver = browser()
        driver.get(url)
        script = "return window.citybrain.live && window.citybrain.live.time_s !== null"
        wait_for(lambda: driver.execute_script(script), 30, "the first live state")
        assert driver.find_element("id", "signal-count").text == "9"
        assert driver.execute_script("return window.citybrain.net.signals.length") == 9
        first = driver.execute_script("return window.citybrain.live.phase")
        wait_for(lambda: driver.execute_script("return window.citybrain.live.phase") != first, 20,
                 "a displayed phase to change")
        assert driver.execute_script("return window.citybrain.updates") >= 2
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(ARTIFACTS / "dashboard.png"))
        errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
        assert not errors, errors
    finally:
        if driver:
            driver.quit()
        run.kill()
        run.wait()
