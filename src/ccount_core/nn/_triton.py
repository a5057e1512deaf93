"""Keep triton out of CPU-only processes.

torchvision imports ``torch._dynamo``, which imports triton (bundled with CUDA builds of torch).
triton only compiles GPU kernels, and its own LLVM clashes with another LLVM already loaded in
the process, such as Mesa's software OpenGL (llvmpipe) behind napari's canvas: the process
dies with a segmentation fault. Without a CUDA GPU triton is of no use, so it is hidden before
the first torchvision import: ``import triton`` then raises ImportError and torch runs
without it (CPU code generation never uses triton).
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
