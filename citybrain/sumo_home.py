"""Locate the SUMO installation that ships with the `eclipse-sumo` wheel.

`import libsumo` sets SUMO_HOME to a folder without `bin/` or `tools/`, so every
entry point calls `ensure_sumo_home()` before anything SUMO-related is imported.
Another installation (e.g. the SUMO a published benchmark used) can run a
simulation through TraCI: `sumo_binary("sumo", home)`.
"""
from __future__ import annotations

import functools
import os
import re
import subprocess
from pathlib import Path

__all__ = ["ensure_sumo_home", "sumo_binary", "sumo_tool", "sumo_version"]


def ensure_sumo_home() -> Path:
    """Point SUMO_HOME at the eclipse-sumo package (has bin/ and tools/)."""
    import sumo  # the eclipse-sumo wheel; imports nothing of traci/libsumo

    home = Path(sumo.SUMO_HOME)
    os.environ["SUMO_HOME"] = str(home)
    return home


def sumo_binary(name: str, home: str | Path | None = None) -> str:
    """Absolute path of a SUMO executable such as `sumo` or `netgenerate`: the
    wheel's, or the one in `home`/bin."""
    path = (Path(home).resolve() if home else ensure_sumo_home()) / "bin" / name
    if not path.exists():
        raise FileNotFoundError(f"SUMO executable {name!r} not found at {path}")
    return str(path)


def sumo_tool(relative: str) -> str:
    """Absolute path of a script under SUMO's tools/ folder."""
    path = ensure_sumo_home() / "tools" / relative
    if not path.exists():
        raise FileNotFoundError(f"SUMO tool {relative!r} not found at {path}")
    return str(path)


@functools.lru_cache(maxsize=None)
def sumo_version(binary: str) -> tuple[int, ...]:
    """(major, minor, patch) of a SUMO executable, from its --version banner."""
    banner = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True).stdout
    match = re.search(r"(\d+)\.(\d+)\.(\d+)", banner)
    if match is None:
        raise RuntimeError(f"{binary} --version printed no version: {banner[:200]!r}")
    return tuple(int(part) for part in match.groups())
