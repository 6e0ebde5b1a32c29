"""Hidden attention: exact extraction, its tiled kernels, means over many images, and findings.

``options`` (``AttentionOptions``: what a map means, one value passed whole between the functions
here), ``maps`` (``AttentionMaps``: maps per block with what describes them, a pytree), ``extract``
(``extract_attention``, ``block_attention``, ``route_attention``: exact maps of SS2D blocks),
``tiles`` (exact channel-mean maps by chunked matrix products), ``verify`` (rebuilding each block's
scan output from its maps), ``mean`` (streamed, sharded, resumable means over many images),
``sizes`` (how large maps are and how many are made at once: the byte rules), ``cost`` (what a mean
will cost before it runs: FLOPs, time, memory), ``resume`` (the saved state of a resumable mean),
``rollout`` (maps chained across the blocks of a stage), ``embed`` (2-D embeddings of patches by
their attention rows: PCA, t-SNE, UMAP) and ``findings`` (the reference study's findings as
numbers).
``embed`` sits here, not with the views, because a finding (block distinctness) is computed on a
joint embedding.

May import: :mod:`jaxmamba.errors`, :mod:`jaxmamba.orders`, :mod:`jaxmamba.models`,
:mod:`jaxmamba.storage` (a resumable mean keeps its state in an atomic store).
"""
