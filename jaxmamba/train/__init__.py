"""Training: the bundled digits, optimiser, resumable loop, evaluation, the shipped models' recipe.

``data`` (images that ship with the package, augmentation, batching), ``optim``
(``TrainConfig``, AdamW with warm-up and cosine decay), ``loop`` (``fit``), ``evaluate`` and
``recipe`` (how the embedded default model and the order models were trained).

May import: :mod:`jaxmamba.errors`, :mod:`jaxmamba.orders`, :mod:`jaxmamba.models`,
:mod:`jaxmamba.storage`. Importing ``jaxmamba`` does not import this package (nor optax).
"""
