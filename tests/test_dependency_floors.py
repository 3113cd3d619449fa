"""`.ci/floors.txt` is the device install's lowest allowed versions: `.ci/run` tests Python 3.10
(JetPack 6's) at those versions, so each one must be the floor pyproject.toml states, and every
package of that install with a floor must be there (a user check: OpenCV 4.8, pydantic 2.5 and
amqtt 0.11 were allowed, never tried, and each broke a command)."""

from __future__ import annotations

import sys
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
#: The device's install as `.ci/run` makes it on Python 3.10: the plain one, `.[cpu,demo]`, and
#: the onnx that the `jetson` extra brings (`edge calibrate` on the device).
DEVICE_EXTRAS = ("runtime", "cpu", "demo")


def device_requirements() -> dict[str, Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    texts = list(project["dependencies"])
    for extra in DEVICE_EXTRAS:
        texts += project["optional-dependencies"][extra]
    texts += [t for t in project["optional-dependencies"]["jetson"] if t.startswith("onnx>")]
    found = {}
    for text in texts:
        requirement = Requirement(text)
        if requirement.name != "edge-runtime":
            found[requirement.name.lower()] = requirement
    return found


def pinned_floors() -> dict[str, Version]:
    lines = (ROOT / ".ci" / "floors.txt").read_text().splitlines()
    pins = [line.split("==") for line in lines if line.strip() and not line.startswith("#")]
    return {name.strip().lower(): Version(version) for name, version in pins}


def test_each_pinned_floor_is_the_floor_pyproject_states_and_none_is_missing():
    requirements, pins = device_requirements(), pinned_floors()
    with_floors = {name for name, r in requirements.items()
                   if any(s.operator == ">=" for s in r.specifier)}
    assert set(pins) == with_floors, (set(pins) ^ with_floors)
    for name, pinned in pins.items():
        floor = next(Version(s.version) for s in requirements[name].specifier
                     if s.operator == ">=")
        assert pinned in requirements[name].specifier, (name, pinned)
        # the lowest release of the floor's own series (a patch release with the wheels)
        assert pinned.release[:len(floor.release)] == floor.release, (name, pinned, floor)
