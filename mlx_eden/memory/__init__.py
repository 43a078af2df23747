"""Memory planning (before loading anything) and profiling (while training)."""
