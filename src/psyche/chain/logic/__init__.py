"""The coordinator program's instruction logic, split by concern; use psyche.chain.coordinator_logic."""
