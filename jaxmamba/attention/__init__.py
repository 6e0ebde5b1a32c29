"""Hidden attention: exact extraction, its tiled kernels, means over many images, and findings.

``extract`` (``extract_attention``, ``AttentionMaps``, ``AttentionOptions``, ``verify``),
``tiles`` (exact channel-mean maps by chunked matrix products), ``mean`` (streamed, sharded,
resumable means over many images and ``rollout``), ``embed`` (2-D embeddings of patches by their
attention rows: PCA, t-SNE, UMAP) and ``findings`` (the reference study's findings as numbers).
``embed`` sits here, not with the views, because a finding (block distinctness) is computed on a
joint embedding.

May import: :mod:`jaxmamba.errors`, :mod:`jaxmamba.orders`, :mod:`jaxmamba.models`,
:mod:`jaxmamba.storage` (a resumable mean keeps its state in an atomic store).
"""
