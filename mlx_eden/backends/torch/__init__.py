"""The PyTorch CPU backend: the only package that imports torch, peft and transformers' models.

Kept import-free on purpose: `base.choose_backend` looks this package up to decide whether the
backend exists, and that must not pull torch into a process that will train with MLX.
"""
