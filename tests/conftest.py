from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RESCO = ROOT.parent / "shared" / "networks" / "resco"
SHORT = ROOT / "scenarios" / "grid3x3-short"
GRID10_NET = ROOT / "networks" / "grid10x10" / "grid10x10.net.xml"


@pytest.fixture(scope="session")
def resco():
    if not RESCO.is_dir():
        pytest.skip(f"RESCO networks not found at {RESCO} (CI has them beside the repo)")
    return RESCO
