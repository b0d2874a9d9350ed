"""Print the lowest versions pyproject.toml allows, one ``name==version`` a line.

Every dependency (and the ``test`` extra) must have a ``>=`` floor; scripts/test.sh
installs exactly these in a second venv and runs the unit tests there, so that a
floor the code has outgrown fails here instead of on a user's machine.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

# The linter runs from the main venv only; the floors venv runs tests.
NOT_FOR_TESTS = {"ruff"}
FLOOR = re.compile(r"^\s*([A-Za-z0-9_.\-]+(?:\[[A-Za-z0-9_,\-]+\])?)\s*>=\s*([0-9][^,;\s]*)\s*$")


def lowest(requirements: list[str]) -> list[str]:
    pins = []
    for requirement in requirements:
        match = FLOOR.match(requirement)
        if match is None:
            raise SystemExit(f"no plain >= floor in {requirement!r}: give one")
        if match[1].lower() in NOT_FOR_TESTS:
            continue
        pins.append(f"{match[1]}=={match[2]}")
    return pins


def main() -> None:
    project = tomllib.loads(Path(sys.argv[1]).read_text())["project"]
    for pin in lowest(project["dependencies"] + project["optional-dependencies"]["test"]):
        print(pin)


if __name__ == "__main__":
    main()
