"""A local Solana-compatible chain (JSON-RPC + pubsub) running the Psyche programs, for dev and tests."""
