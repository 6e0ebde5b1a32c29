"""Convert official VMamba and Vision Mamba (Vim) PyTorch checkpoints to jaxmamba models and
Orbax checkpoints.

>>> from jaxmamba.convert import load_torch_checkpoint, save
>>> model = load_torch_checkpoint("vssm1_tiny_0230s_ckpt_epoch_264.pth")  # doctest: +SKIP
>>> save(model, "checkpoints/vmamba_tiny_s1l8")  # doctest: +SKIP
>>> vim = load_torch_checkpoint("vim_t_midclstok_76p1acc.pth", img_size=224)  # doctest: +SKIP

``state_dict`` converts VMamba state dicts (and hands Vim ones to ``vim_state_dict``),
``checkpoint_io`` reads the files, ``cli`` is the command line: ``python -m jaxmamba.convert
IN.pth --out DIR [--variant NAME] [--ema] [--img-size H[xW]] [--interpolate-pos-embed]``.
Nothing here imports torch until a PyTorch file is read.

May import: :mod:`jaxmamba.models`, :mod:`jaxmamba.storage`, :mod:`jaxmamba.errors`.
"""

from jaxmamba.storage.checkpoint import CheckpointError, load, save

from .checkpoint_io import load_torch_checkpoint, read_state_dict, select_state_dict
from .state_dict import detect_config, normalize_state_dict, state_dict_to_model

__all__ = [
    "CheckpointError", "load", "save",
    "load_torch_checkpoint", "read_state_dict", "select_state_dict",
    "detect_config", "normalize_state_dict", "state_dict_to_model",
]  # fmt: skip
