"""Dashboard soak: several headless Chromium pages on a whole simulated hour.

    .venv/bin/python benchmarks/dashboard_soak.py [--scenario scenarios/grid10x10-ev] [--browsers 4] [--pace 60]

Runs `citybrain simulate SCENARIO --dashboard 0 --pace PACE`, connects BROWSERS
headless Chromium pages (Debian's chromium + chromedriver) for the whole run,
and every 2 s records the simulate process's resident memory and how long
/api/state takes to answer. Prints a summary and writes JSON next to the other
bench results. Pages are also checked to keep receiving updates.
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def page(url: str) -> webdriver.Chrome:
    options = Options()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1200,800"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    driver.get(url)
    return driver


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", default="scenarios/grid10x10-ev")
    parser.add_argument("--browsers", type=int, default=4)
    parser.add_argument("--pace", type=float, default=60.0)
    parser.add_argument("--json", default="results/bench/dashboard_soak.json")
    args = parser.parse_args()

    run = subprocess.Popen([sys.executable, "-m", "citybrain.cli", "simulate", args.scenario, "--dashboard", "0",
                            "--pace", str(args.pace)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = None
    for line in run.stderr:
        match = re.search(r"dashboard (http://\S+)", line)
        if match:
            url = match.group(1)
            break
    if not url:
        raise SystemExit(f"simulate did not start its dashboard (exit {run.wait()})")
    threading.Thread(target=run.stderr.read, daemon=True).start()
    drivers = [page(url) for _ in range(args.browsers)]
    samples = []
    started = time.monotonic()
    while run.poll() is None:
        t0 = time.perf_counter()
        try:
            with urllib.request.urlopen(url + "api/state", timeout=10) as response:
                state = json.load(response)
        except OSError:
            break  # the run ended between poll() and the request
        answer_ms = (time.perf_counter() - t0) * 1e3
        try:
            memory = rss_mb(run.pid)
        except FileNotFoundError:
            break
        updates = [d.execute_script("return window.citybrain.updates") for d in drivers]
        samples.append({"wall_s": round(time.monotonic() - started, 1), "sim_s": state["time_s"],
                        "rss_mb": round(memory, 1), "state_ms": round(answer_ms, 2), "page_updates": updates})
        time.sleep(2.0)
    for driver in drivers:
        driver.quit()
    run.wait()
    settled = [s for s in samples if s["sim_s"] and s["sim_s"] >= 300]
    summary = {
        "scenario": args.scenario, "browsers": args.browsers, "pace": args.pace, "samples": len(samples),
        "rss_mb_first": settled[0]["rss_mb"] if settled else None,
        "rss_mb_last": settled[-1]["rss_mb"] if settled else None,
        "rss_mb_max": max(s["rss_mb"] for s in samples) if samples else None,
        "state_ms_p50": sorted(s["state_ms"] for s in samples)[len(samples) // 2] if samples else None,
        "state_ms_max": max(s["state_ms"] for s in samples) if samples else None,
        "page_updates_min": min(min(s["page_updates"]) for s in samples[-1:]) if samples else None,
    }
    print(json.dumps(summary, indent=2))
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"summary": summary, "samples": samples}, indent=2) + "\n")


if __name__ == "__main__":
    main()
