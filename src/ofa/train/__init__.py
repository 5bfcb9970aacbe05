"""Training and fine-tuning: ``ofa train CONFIG.yaml`` or, for many processes,
``torchrun --nproc_per_node N -m ofa.train CONFIG.yaml``."""

from .config import TrainConfig, build_config, load_config
from .trainer import Trainer, run

__all__ = ["TrainConfig", "Trainer", "build_config", "load_config", "run"]
