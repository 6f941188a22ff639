"""Which floating-point precision a model computes in here: bf16 where the hardware has it natively.

Used by ``t2m train`` (bf16 autocast) and ``t2m datastore build`` (the teacher-forced pass that computes
the keys). The weights stay float32 either way; autocast runs the matrix products in bf16.
"""

from __future__ import annotations

from pathlib import Path

PRECISIONS = ("auto", "bf16", "fp32")


def native_bf16() -> bool:
    """Whether bf16 arithmetic is native here: a CUDA device that supports it, or a CPU with AVX512-BF16 or
    AMX. Elsewhere (e.g. an AVX2-only CPU) PyTorch emulates bf16 matmuls: a 10.5M-parameter T5 trained at
    about 40 tokens/s in bf16 autocast against 446 in float32 on one AVX2 core here."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    cpu = getattr(torch, "cpu", None)
    checks = [getattr(cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    if any(check is not None for check in checks):
        return any(check() for check in checks if check is not None)
    try:  # older PyTorch: read the CPU flags
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def compute_dtype(precision: str):
    """The autocast dtype ``precision`` means here: ``torch.bfloat16`` for "bf16", and for "auto" where
    bf16 is native (:func:`native_bf16`); None (float32, no autocast) for "fp32" and "auto" elsewhere."""
    import torch

    if precision not in PRECISIONS:
        raise ValueError(f"precision = {precision!r}: use one of {', '.join(PRECISIONS)}")
    if precision == "bf16" or (precision == "auto" and native_bf16()):
        return torch.bfloat16
    return None
