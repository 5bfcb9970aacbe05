"""Datasets: ShapesWorld, a deterministic synthetic multitask dataset for offline training."""

from .shapes import BACKGROUNDS, COLORS, SHAPES, SIZES, VQA_ANSWERS, Scene, Shape, ShapesWorld

__all__ = ["BACKGROUNDS", "COLORS", "SHAPES", "SIZES", "VQA_ANSWERS", "Scene", "Shape",
           "ShapesWorld"]
