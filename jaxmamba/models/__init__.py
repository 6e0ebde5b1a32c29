"""The models: configs, layers, the SS2D operator, the VMamba and Vim classifiers, the model API.

``config`` (one frozen dataclass per released VMamba variant, and the registry of both families),
``vim_config`` (``VimConfig``, the Vision Mamba variants and their token layout), ``vim`` (the
Flax Vim classifier and its two-direction ``scan_inputs``), ``layers`` (PyTorch-named layers),
``ss2d`` (the 2-D selective scan with the patch order passed in as data, and ``ScanInputs``, the
scan's typed arguments), ``vmamba`` (the Flax classifier), ``init_rules`` (the official
initialisation, drawn on the host), ``params`` (state-dict names <-> parameter tree), ``cache``
(``ScanCache``: what ``run_with_cache`` keeps, each block's scan input and output; ``LayerScan``
for a Vim layer) and ``model`` (``Model``, ``create_model``, ``forward``, ``run_with_cache``, and
``cpu_pieces``, the batch slicing a caller chooses for its device and passes to ``apply``), for
both families.

May import: :mod:`jaxmamba.errors`, :mod:`jaxmamba.orders`, :mod:`jaxmamba.kernels`. Nothing here
reads or writes files (that is :mod:`jaxmamba.storage`) or knows about attention maps.
"""
