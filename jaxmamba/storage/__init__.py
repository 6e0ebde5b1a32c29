"""Files: the atomic checksummed store, model checkpoints, images, the compilation cache.

``store`` (atomic, checksummed folders of arrays; locks; guarded paths; the one way jaxmamba writes
what it reads back), ``checkpoint`` (``save``/``load`` of a ``Model`` as an Orbax checkpoint),
``images`` (decode, resize, crop, normalise) and ``compile_cache`` (JAX's persistent cache).

May import: :mod:`jaxmamba.errors`; ``checkpoint`` also :mod:`jaxmamba.models` (it saves a
``Model``). The models never import storage.
"""
