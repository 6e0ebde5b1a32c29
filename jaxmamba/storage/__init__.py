"""Files: the atomic checksummed store, model checkpoints, images, the compilation cache.

``store`` (atomic, checksummed folders of arrays: the one way jaxmamba writes what it reads back;
it re-exports the helpers a writer needs), ``files`` (guarded paths, temporaries, atomic
single-file writes, strict JSON), ``lock`` (one writer per folder: a lock file with a heartbeat),
``checkpoint`` (``save``/``load`` of a ``Model`` as an Orbax checkpoint), ``images`` (decode,
resize, crop, normalise) and ``compile_cache`` (JAX's persistent cache).

May import: :mod:`jaxmamba.errors`; ``checkpoint`` also :mod:`jaxmamba.models` (it saves a
``Model``). The models never import storage.
"""
