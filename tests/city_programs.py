"""A scenario built on the 3x3 grid whose signals run a city's own kind of program,
shipped in an additional file: a green split over several phases, interim phases that
keep some greens while others clear, a green shown for less than a minimum green,
all-reds, minDur/maxDur, and a different offset at every signal."""
from pathlib import Path

from .conftest import ROOT

GRID3_NET = ROOT / "networks" / "grid3x3" / "grid3x3.net.xml"
GRID3_ROUTES = ROOT / "scenarios" / "grid3x3-short" / "grid3x3-short.rou.xml"
SIGNALS = [f"{column}{row}" for column in "ABC" for row in range(3)]

# (state, duration, minDur, maxDur); links 0-3 and 8-11 are one road (3 and 11 its
# left turns), 4-7 and 12-15 the crossing road.
CITY_PHASES = (
    ("GGGgrrrrGGGgrrrr", 20, 10, 40),
    ("GGGgrrrrGGGgrrrr", 5, 5, 5),
    ("yyyGrrrryyyGrrrr", 3, 3, 3),      # interim: the lefts turn protected while the through traffic clears
    ("rrrGrrrrrrrGrrrr", 10, 6, 20),
    ("rrryrrrrrrryrrrr", 3, 3, 3),
    ("rrrrrrrrrrrrrrrr", 2, 2, 2),
    ("rrrrGGGgrrrrGGGg", 25, 10, 45),
    ("rrrryyyGrrrryyyG", 3, 3, 3),
    ("rrrrrrrGrrrrrrrG", 2, 2, 2),      # a left released for 2 s: part of the interim
    ("rrrrrrryrrrrrrry", 3, 3, 3),
    ("rrrrrrrrrrrrrrrr", 2, 2, 2),
)
CYCLE_S = sum(phase[1] for phase in CITY_PHASES)


def programs_xml(program_id: str = "city", offsets=None, kind: str = "static") -> str:
    lines = ["<additional>"]
    for k, signal in enumerate(SIGNALS):
        offset = offsets[k] if offsets is not None else 11 * k
        lines.append(f'  <tlLogic id="{signal}" type="{kind}" programID="{program_id}" offset="{offset}">')
        lines += [f'    <phase state="{s}" duration="{d}" minDur="{lo}" maxDur="{hi}"/>' for s, d, lo, hi in CITY_PHASES]
        lines.append("  </tlLogic>")
    lines.append("</additional>")
    return "\n".join(lines) + "\n"


def city_scenario(folder: Path, begin_s: float = 0.0, end_s: float = 300.0, extra_additional: str = "",
                  kind: str = "static") -> Path:
    """Write the scenario into `folder` (programs of SUMO type `kind`); returns its .sumocfg."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "city.tls.xml").write_text(programs_xml(kind=kind))
    additional = "city.tls.xml" + (f",{extra_additional}" if extra_additional else "")
    config = folder / "city.sumocfg"
    config.write_text(f"""<configuration>
    <input>
        <net-file value="{GRID3_NET}"/>
        <route-files value="{GRID3_ROUTES}"/>
        <additional-files value="{additional}"/>
    </input>
    <time><begin value="{begin_s:g}"/><end value="{end_s:g}"/></time>
</configuration>
""")
    return config
