"""Fuse, GGUF, PEFT and Ollama export: everything after training.

Backend-neutral: these modules read and write files with numpy, safetensors and gguf-py. The few
steps that need a framework (fusing on MLX, MLX reference logits, PEFT on torch) are imported
from `backends/` inside the function that needs them, and llama.cpp is reached only through
`llamacpp.py`.
"""
