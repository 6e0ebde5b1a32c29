"""Selective-scan kernels: a pure-XLA implementation and (on GPU/TPU) Pallas kernels.

``selective_scan`` is the public entry point; ``implementation=`` picks the path
(``"xla"``, ``"pallas"``, or ``None`` for the best available on the current backend).
``scan_pallas`` is the Pallas entry point (``scan``, its ``custom_vjp``, ``choose_platform``);
``pallas_common`` holds what the backends share (``PLATFORMS``, ``BlockSizes``, the reference
``scan_ref``), ``pallas_mosaic`` the Mosaic GPU kernels (the GPU default from JAX 0.11 on
Hopper and newer), ``pallas_gpu`` the Triton kernels (older GPUs or JAX; Pallas's Triton
backend is deprecated from JAX 0.11) and ``pallas_tpu`` the Mosaic TPU kernels.

May import: :mod:`jaxmamba.errors` only (the models import the kernels).
"""

from jaxmamba.kernels.selective_scan import ScanError, selective_scan, selective_scan_ref

__all__ = ["ScanError", "selective_scan", "selective_scan_ref"]
