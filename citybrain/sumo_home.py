"""Locate the SUMO installation that ships with the `eclipse-sumo` wheel.

`import libsumo` sets SUMO_HOME to a folder without `bin/` or `tools/`, so every
entry point calls `ensure_sumo_home()` before anything SUMO-related is imported.
"""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["ensure_sumo_home", "sumo_binary", "sumo_tool"]


def ensure_sumo_home() -> Path:
    """Point SUMO_HOME at the eclipse-sumo package (has bin/ and tools/)."""
    import sumo  # the eclipse-sumo wheel; imports nothing of traci/libsumo

    home = Path(sumo.SUMO_HOME)
    os.environ["SUMO_HOME"] = str(home)
    return home


def sumo_binary(name: str) -> str:
    """Absolute path of a SUMO executable such as `sumo` or `netgenerate`."""
    path = ensure_sumo_home() / "bin" / name
    if not path.exists():
        raise FileNotFoundError(f"SUMO executable {name!r} not found at {path}")
    return str(path)


def sumo_tool(relative: str) -> str:
    """Absolute path of a script under SUMO's tools/ folder."""
    path = ensure_sumo_home() / "tools" / relative
    if not path.exists():
        raise FileNotFoundError(f"SUMO tool {relative!r} not found at {path}")
    return str(path)
