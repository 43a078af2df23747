"""PEFT's own forward pass: the consumer `eden-mlx export peft --verify` checks against."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from ...errors import UserError


def peft_logits(model_dir: str | Path, peft_dir: str | Path,
                prompts: list[list[int]]) -> list[np.ndarray]:
    """Float32 logits of transformers' model with `peft.PeftModel.from_pretrained(peft_dir)`,
    one (len(prompt), vocab) array per prompt."""
    try:
        import torch
        from peft import PeftModel
        from transformers import AutoModelForCausalLM
    except ImportError:
        raise UserError("verifying a PEFT adapter needs the torch extra",
                        hint="pip install -e '.[torch]' in the clone") from None
    from transformers.utils import logging as hf_logging

    # transformers draws a "Loading weights" progress bar, which lands in the middle of
    # --verify's report (and in logs as carriage-return noise).
    hf_logging.disable_progress_bar()
    with warnings.catch_warnings():  # deprecation notices between transformers and peft
        warnings.simplefilter("ignore", FutureWarning)
        base = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
        model = PeftModel.from_pretrained(base, str(peft_dir)).eval()
    with torch.no_grad():
        return [model(torch.tensor([ids])).logits[0].float().numpy() for ids in prompts]
