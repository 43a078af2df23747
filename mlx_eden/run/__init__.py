"""Backend-neutral training orchestration: the loop, its events, the run directory, the memory
profiler (a listener of the loop) and the memory plan a run receives (runplan.RunPlan)."""
