"""How the engine compiles its network (no Qt, no napari): the :func:`torch.compile` settings
for each device, and the batch shapes a compiled network runs.

:class:`~napari_chromagan.engine.colorize.Colorizer` compiles when asked (``compile=True``, the
command line's ``--compile``); eager is the default, since the first call of each batch shape
waits for the compilation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["compile_options", "compiled_batch"]


def compile_options(
    device: torch.device, cuda_graphs: bool
) -> tuple[dict[str, Any], dict[str, Any]]:
    """How :class:`~napari_chromagan.engine.colorize.Colorizer` compiles: ``(kwargs, inductor)``, the keyword arguments for
    :func:`torch.compile` besides ``dynamic``, and the ``torch._inductor.config`` settings patched
    around every call of the compiled network (compilation happens lazily, at the first call of
    each batch shape, so that is where the settings must hold; the process's own config is left
    as it is).

    * CUDA graphs: ``mode="reduce-overhead"``.
    * The CPU: inductor's ``freezing``, which treats the (inference-only) weights as constants:
      convolution weights are packed once into oneDNN's layout and the activations fused into
      the convolutions, instead of per call. Without it compiling was measured no faster than
      eager on this project's 2-core CPU; passed as ``torch.compile(options=...)`` it gave only
      part of the gain (9.8 ms against 7.8 ms patched, eager 11.2 ms, one 224 plane of the
      default weights under bf16, 2026-12-03); end to end see
      ``bench/results/default-weights-cpu-20261203-vm*-compile.json``.
    * Otherwise nothing: inductor's defaults.
    """
    if cuda_graphs:
        return {"mode": "reduce-overhead"}, {}
    if device.type == "cpu":
        return {}, {"freezing": True}
    return {}, {}


def compiled_batch(n: int, batch_size: int) -> int:
    """The batch a compiled network runs ``n`` planes in: the smallest power of two that holds
    them, at most ``batch_size`` (which holds any batch).

    A compiled graph is specialised to one batch size, and each new size costs a compilation
    (seconds on a GPU, 5-20 s on a CPU). Padding every batch to ``batch_size`` compiles once but
    runs a single plane as ``batch_size`` planes (8x the work with the default of 8); powers of two
    bound the graphs to 1 + log2(batch_size) and the padding to less than half the batch.
    """
    if n >= batch_size:
        return batch_size
    return min(batch_size, 1 << max(0, n - 1).bit_length())
