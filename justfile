# Psyche run-manager developer tasks; `just` lists them. Each recipe calls the scripts CI uses (scripts/).
# No `just`? `scripts/setup` installs it into .venv (.venv/bin/just), or: pip install rust-just.

set positional-arguments
set shell := ["bash", "-euo", "pipefail", "-c"]

# List the recipes
default:
    @{{just_executable()}} --list --unsorted

# The whole test suite as CI runs it: Debian packages, .venv, private Docker engine + registry, checks, pytest
test *PYTEST_ARGS:
    scripts/test "$@"

# Static checks only: ruff format, ruff lint, mypy --strict, flake.nix parse
check:
    scripts/setup
    scripts/check

# Format and auto-fix lint in place
fmt:
    scripts/setup
    .venv/bin/ruff format src tests bench
    .venv/bin/ruff check --fix src tests bench

# Set up .venv (package + dev tools); `just setup --system` also installs the Debian packages (root)
setup *FLAGS:
    scripts/setup "$@"

# Run the run-manager's main job (join a run) with the given .env file; extra args go to run-manager
run-manager ENV_FILE *ARGS:
    @scripts/setup
    @.venv/bin/run-manager --env-file "$@"

# Start the private Docker engine and loopback registry (reused if already running); prints the env to use
services-start:
    scripts/services start
    scripts/services env

# Stop the engine and registry that `just services-start` started (never one it found running)
services-stop:
    scripts/services stop

# Is the engine / registry up, and who started it
services-status:
    scripts/services status

# Run every bench/*.py; each prints its figures
bench:
    #!/usr/bin/env bash
    set -euo pipefail
    scripts/setup
    shopt -s nullglob
    benches=(bench/*.py)
    [ "${#benches[@]}" -gt 0 ] || { echo "bench: no bench/*.py yet"; exit 0; }
    for bench in "${benches[@]}"; do
        echo "== $bench"
        .venv/bin/python "$bench"
    done

# Flags go to scripts/demo: --yes, --dir DIR, --no-build-if-present, --for SECONDS, --until REGEX, --metrics-port N
# The main job on the embedded local default: local chain + client image + run-manager, until Ctrl+C (README)
demo *FLAGS:
    scripts/demo "$@"

# One self-contained executable, dist/run-manager (PyInstaller onefile; `--onedir` for a folder build)
build-binary *FLAGS:
    scripts/build-binary "$@"

# Build the client image offline and push it as 127.0.0.1:5000/psyche-client:<version> (docs/client-image.md)
build-image *ARGS:
    scripts/setup
    scripts/services start
    scripts/build-client-image "$@"

# Reserved for the issues that add them (keep the names; README and docs refer to them):
#   localnet      the local Solana-compatible chain on 127.0.0.1:8899 (RPC) / 8900 (WebSocket)
