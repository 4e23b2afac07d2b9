"""Charts of run reports (the only matplotlib user); PNG files for people to look at."""
from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["comparison_chart", "scenarios_chart"]


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")       # files only, no display
    import matplotlib.pyplot as plt
    return plt


def comparison_chart(report: dict, path: str | Path) -> None:
    """One scenario, every controller of a simulate/compare report: vehicles halted on
    the signals' lanes and mean delay of arrived vehicles over time, and the final
    mean delay."""
    plt = _pyplot()
    controllers = report["controllers"]
    fig, (queued, delay, final) = plt.subplots(1, 3, figsize=(14, 4.2), gridspec_kw={"width_ratios": [3, 3, 2]})
    for name, result in controllers.items():
        series = result["series"]
        minutes = (np.array(series["time_s"]) - report["begin_s"]) / 60.0
        queued.plot(minutes, series["queued_veh"], label=name)
        delay.plot(minutes, np.array(series["mean_delay_so_far_s"], dtype=float), label=name)   # None: not reported
    queued.set_xlabel("simulated minutes")
    queued.set_ylabel("vehicles halted on the signals' lanes")
    delay.set_xlabel("simulated minutes")
    delay.set_ylabel("mean delay of arrived vehicles so far, s")
    queued.legend()
    names = list(controllers)
    values = np.array([controllers[n]["resco_delay_s"] for n in names], dtype=float)   # None: nan
    bars = final.bar(names, np.nan_to_num(values), color=[f"C{i}" for i in range(len(names))])
    final.bar_label(bars, fmt="%.1f")
    final.set_ylim(0, 1.15 * max(float(np.nanmax(values, initial=0.0)), 1.0))
    final.set_ylabel("all-vehicle delay, s")
    final.tick_params(axis="x", rotation=30)
    fig.suptitle(f"{report['scenario']}, seed {report['seed']}, detectors: {report.get('detectors', 'lanes')}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def scenarios_chart(report: dict, path: Path) -> None:
    plt = _pyplot()
    names = list(report["scenarios"])
    controllers = report["controllers"]
    width = 0.8 / len(controllers)
    fig, ax = plt.subplots(figsize=(max(6, 1.4 * len(names)), 4.5))
    for i, controller in enumerate(controllers):
        means = [report["scenarios"][n][controller]["resco_delay_s"] for n in names]
        stds = [report["scenarios"][n][controller]["resco_delay_std_s"] for n in names]
        ax.bar(np.arange(len(names)) + (i - (len(controllers) - 1) / 2) * width, means, width, yerr=stds,
               label=controller, capsize=2)
    ax.set_xticks(np.arange(len(names)), names, rotation=30, ha="right")
    ax.set_ylabel("all-vehicle delay, s")
    values = np.array([report["scenarios"][n][c]["resco_delay_s"] for n in names for c in controllers], dtype=float)
    if (values > 0).any():
        ax.set_yscale("log")
    ax.legend()
    ax.set_title("citybrain bench scenarios")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
