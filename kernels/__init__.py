"""Selective-scan kernels: a pure-XLA implementation and (on GPU/TPU) Pallas kernels.

``selective_scan`` is the public entry point; ``implementation=`` picks the path
(``"xla"``, ``"pallas"``, or ``None`` for the best available on the current backend).
``scan_pallas`` is the Pallas entry point (``scan``, its ``custom_vjp``); ``pallas_common`` holds
what both backends share (``BlockSizes``, the reference ``scan_ref``), ``pallas_gpu`` the Triton
kernels and ``pallas_tpu`` the Mosaic kernels.

May import: :mod:`jaxmamba.errors` only (the models import the kernels).
"""

from jaxmamba.kernels.selective_scan import ScanError, selective_scan, selective_scan_ref

__all__ = ["ScanError", "selective_scan", "selective_scan_ref"]
