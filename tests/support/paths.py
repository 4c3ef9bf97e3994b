"""Where the project and its real Psyche fixtures are, and a config built from them."""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
# Real upstream files (coordinator dumps, run-config TOMLs), copied into the project: see its README.md.
PSYCHE_FIXTURES = PROJECT_ROOT / "tests" / "fixtures" / "psyche"


def worst_toml(directory: Path) -> Path:
    """The real config.toml with every variable-length model field at its longest (Borsh: 482 bytes)."""
    text = (PSYCHE_FIXTURES / "run-config-config.toml").read_text()
    for old, new in [
        ('repo_id = "emozilla/llama2-1.1b-gqa-init"', f'repo_id = "{"o" * 64}"\nrevision = "{"r" * 64}"'),
        ('shuffle = "DontShuffle"', "shuffle = { Seeded = [" + ", ".join(["7"] * 32) + "] }"),
        ('bucket_name = "nous-pretraining-public-us"', f'bucket_name = "{"b" * 64}"'),
        ('filter_directory = "fineweb-edu-tokenized-llama2"', f'filter_directory = "{"f" * 192}"'),
    ]:
        assert old in text
        text = text.replace(old, new)
    path = directory / "worst.toml"
    path.write_text(text)
    return path
