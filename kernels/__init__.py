"""Selective-scan kernels: a pure-XLA implementation and (on GPU/TPU) Pallas kernels.

``selective_scan`` is the public entry point; ``implementation=`` picks the path
(``"xla"``, ``"pallas"``, or ``None`` for the best available on the current backend).
"""

from jaxmamba.kernels.selective_scan import ScanError, selective_scan, selective_scan_ref

__all__ = ["ScanError", "selective_scan", "selective_scan_ref"]
