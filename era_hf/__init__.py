"""era_hf: ERA (Efficient Retrieval Adapter) on the Hugging Face stack.

A strong query encoder plus a small trained head maps queries into the embedding space of a
cheap, frozen document index, so the corpus is never re-encoded.
"""

from __future__ import annotations

__version__ = "0.1.0"

from transformers import AutoConfig, AutoModel

from .configuration_era import ERAConfig
from .errors import ERAError
from .modeling_era import ERAModel

AutoConfig.register(ERAConfig.model_type, ERAConfig, exist_ok=True)
AutoModel.register(ERAConfig, ERAModel, exist_ok=True)
# Saved models carry auto_map + these self-contained files, so trust_remote_code loading works without era_hf.
ERAConfig.register_for_auto_class()
ERAModel.register_for_auto_class("AutoModel")

__all__ = ["ERAConfig", "ERAModel", "ERAError", "__version__"]
