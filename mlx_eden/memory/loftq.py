"""The load-time spike of adapter.init: loftq (backends/mlx/loftq.py).

LoftQ reads each adapted layer's float weight W (out, in) while the quantized base is already
resident, one layer at a time: the stored tensor in the compute dtype and a float32 numpy copy,
then a few float32 (out, in) arrays at once inside `loftq_layer` (deq(Q), the residual in place,
the next round's input, MLX's cached buffers of the quantize/dequantize round trip). The
randomized SVD adds only (out + in) x (rank + 10) floats. Measured peak RSS growth of
`loftq_layer` on a 1024 x 2048 layer, rank 16, 4-bit, after warm-up: 5.1 x the float32 bytes of
W with iters=1, 6.9 x with iters=2 (tests/test_loftq.py checks it stays under LAYER_COPIES).
"""

from __future__ import annotations

from .shapes import ModelShape

LAYER_COPIES = 7  # float32 (out, in) arrays alive at once inside loftq_layer
F32 = 4


def loftq_spike(shape: ModelShape, targets, rank: int, dt: int) -> int:
    """Bytes LoftQ adds at load on top of the quantized base: its largest adapted layer, read
    in the compute dtype (`dt` bytes), copied to float32 (plus a cast when dt < 4)."""
    if not targets:
        return 0
    largest = max(targets, key=lambda p: shape.projection(p)[0] * shape.projection(p)[1])
    i, o = shape.projection(largest)
    read = i * o * (dt + F32 + (F32 if dt < F32 else 0))
    return read + LAYER_COPIES * i * o * F32 + 2 * (i + o) * (rank + 10) * F32
