"""Training backends. Only `backends.mlx` imports mlx and only `backends.torch` imports torch."""
