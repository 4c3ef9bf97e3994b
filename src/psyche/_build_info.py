"""Written by scripts/build-binary."""

GIT = "9969bb5-dirty"
BUILT = "2026-12-02T22:24:58Z"
