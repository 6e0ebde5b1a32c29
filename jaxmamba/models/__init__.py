"""The models: configs, layers, the SS2D operator, the VMamba classifier, parameters and the model API.

``config`` (one frozen dataclass per released variant), ``layers`` (PyTorch-named layers),
``ss2d`` (the 2-D selective scan with the patch order passed in as data), ``vmamba`` (the Flax
classifier), ``init_rules`` (the official initialisation, drawn on the host), ``params`` (state-dict
names <-> parameter tree) and ``model`` (``Model``, ``create_model``, ``forward``,
``run_with_cache``). A second family (Vision Mamba) gets its own modules here.

May import: :mod:`jaxmamba.errors`, :mod:`jaxmamba.orders`, :mod:`jaxmamba.kernels`. Nothing here
reads or writes files (that is :mod:`jaxmamba.storage`) or knows about attention maps.
"""
