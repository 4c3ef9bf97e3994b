"""The chain subcommands of run-manager (participant, authorization and run-owner), one module per family."""
