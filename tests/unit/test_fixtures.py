"""The copied upstream fixtures are the files their README names, byte for byte."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path


def test_every_fixture_matches_the_size_and_sha256_in_its_readme(psyche_fixtures: Path) -> None:
    rows = re.findall(
        r"^\| (\S+) \| (\d+) \| `([0-9a-f]{64})` \|", (psyche_fixtures / "README.md").read_text(), re.M
    )
    listed = {name for name, _, _ in rows}
    assert listed == {p.name for p in psyche_fixtures.iterdir() if p.name != "README.md"}
    for name, size, digest in rows:
        data = (psyche_fixtures / name).read_bytes()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (int(size), digest), name
