"""Backend-neutral training orchestration: the loop, its events, and the run directory."""
