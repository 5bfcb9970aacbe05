"""ofa: a standalone, fast implementation of OFA (One For All, arXiv 2202.03052)."""

from .api import OFA, inference_model, load
from .checkpoints import load_model
from .errors import CheckpointError, InputError, OFAError
from .generate import GenerationConfig, generate
from .model import OFAConfig, OFAModel
from .tokenizer import OFATokenizer

__version__ = "0.1.0"

__all__ = ["OFA", "load", "inference_model", "load_model", "OFAModel", "OFAConfig",
           "OFATokenizer", "GenerationConfig", "generate", "OFAError", "InputError",
           "CheckpointError", "__version__"]
