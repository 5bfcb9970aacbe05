"""The OFA architecture: config, backbone, attention, positions, encoder, decoder."""

from .config import PRESETS, OFAConfig
from .decoder import DecoderCache
from .encoder import EncoderOutput
from .ofa import OFAModel

__all__ = ["OFAConfig", "PRESETS", "OFAModel", "EncoderOutput", "DecoderCache"]
