"""The run-manager CLI: joins a run and keeps the client container on the run's version."""
