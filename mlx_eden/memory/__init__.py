"""Memory arithmetic and measurement: plan a run before loading anything (shapes, activations,
planner, devices, fit, preflight) and measure one for real (measure, compare).

Only computes: the tables and verdicts are rendered by ui/memoryplan.py, and the per-phase
profiler that listens to a training run lives in run/profiler.py (here it made an import
cycle with run/). Every figure is bytes, shown as GiB (mlx_eden/units.py)."""
