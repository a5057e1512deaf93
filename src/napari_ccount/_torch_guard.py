"""Import torch safely inside a running napari.

torchvision imports ``torch._dynamo``, which imports triton (bundled with CUDA builds of torch).
triton's own LLVM clashes with the LLVM that Mesa's software OpenGL (llvmpipe) has already
loaded for napari's canvas, and the process dies with a segmentation fault. Counting never
compiles kernels, so where no CUDA GPU is present triton is hidden before the first
torchvision import: ``import triton`` then raises ImportError and torch runs without it.
"""

from __future__ import annotations

import sys


def hide_triton_without_gpu() -> None:
    """Hide triton from torch when it is not loaded yet and no CUDA GPU is available."""
    if "triton" in sys.modules:
        return
    import torch

    if not torch.cuda.is_available():
        sys.modules["triton"] = None  # type: ignore[assignment]
