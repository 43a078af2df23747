"""mlx-eden: LoRA/QLoRA fine-tuning for Qwen-family models on MLX (and a PyTorch CPU fallback)."""

__version__ = "0.1.0"
