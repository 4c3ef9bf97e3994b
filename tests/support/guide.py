"""docs/guide.md's Troubleshooting entries, and each as the pattern a printed `Error:` line must match."""

from __future__ import annotations

import re

from tests.support.paths import PROJECT_ROOT

GUIDE = (PROJECT_ROOT / "docs" / "guide.md").read_text()
ENTRIES: list[str] = re.findall(r"^### `Error: (.+)`$", GUIDE.split("## Troubleshooting", 1)[1], flags=re.M)


def pattern(entry: str) -> re.Pattern[str]:
    """The entry as a regex: ``<placeholder>`` and ``…`` match any non-empty text, the rest literally."""
    parts = re.split(r"<[^>]+>|…", entry)
    return re.compile(".+".join(re.escape(p) for p in parts))
