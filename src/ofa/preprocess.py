"""Image loading and preprocessing exactly as the official OFA data pipeline does it.

Every encoded image (a file, bytes, a server upload) is opened by :func:`read_image`: its
header's size is checked against a pixel limit before any pixel is decoded (a few kilobytes
of PNG can claim a 100,000 x 100,000 canvas), and every decoder failure becomes one
:class:`ImageError` saying why.

Official pipeline (caption/VQA/SNLI-VE/ImageNet eval/RefCOCO): ``Image.open(...).convert("RGB")``
then ``Resize((S, S), BICUBIC)`` on the PIL image (a squash: the aspect ratio is not kept), then
``ToTensor`` (uint8 / 255) and ``Normalize(mean, std)``, all in float32.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from ofa.errors import InputError

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MAX_PIXELS_ENV",
    "OFA_MEAN",
    "OFA_STD",
    "PreprocessCfg",
    "ImageError",
    "ImageInput",
    "ImageTransform",
    "check_max_pixels",
    "default_max_pixels",
    "image_pixels",
    "load_image",
    "preprocess_image",
    "preprocess_images",
    "read_image",
    "resize_as",
    "resize_image",
    "to_rgb",
]

OFA_MEAN = (0.5, 0.5, 0.5)
OFA_STD = (0.5, 0.5, 0.5)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


ImageInput = str | os.PathLike[str] | bytes | Image.Image | np.ndarray | torch.Tensor

# The largest encoded image decoded by default (the server's default too): 40 M pixels is
# 120 MB as RGB, well above any photo the models see (they squash to 480 x 480).
DEFAULT_MAX_PIXELS = 40_000_000
MAX_PIXELS_ENV = "OFA_MAX_PIXELS"
# Pillow hands EPS files to Ghostscript, an interpreter: no image file should run one.
_NEVER_OPENED = frozenset({"EPS"})


class ImageError(InputError):
    """An encoded image was refused: unreadable, corrupt, or over the pixel limit. The message
    says why and is safe to show to a client."""


# ---------------------------------------------------------------------- loading


def _scale_to_uint8(a: np.ndarray, max_value: float) -> np.ndarray:
    return np.clip(np.rint(a.astype(np.float64) * (255.0 / max_value)), 0, 255).astype(np.uint8)


def _integer_to_uint8(a: np.ndarray) -> np.ndarray:
    """Map integer pixel data to 8 bits: keep 0..255, rescale 16-bit, stretch anything else."""
    lo, hi = (int(a.min()), int(a.max())) if a.size else (0, 0)
    if lo >= 0 and hi <= 255:
        return a.astype(np.uint8)
    if lo >= 0 and hi <= 65535:
        return _scale_to_uint8(a, 65535.0)  # 16-bit data stored in a 32-bit "I" image
    return _scale_to_uint8(a.astype(np.float64) - lo, float(hi - lo))


def _float_to_uint8(a: np.ndarray) -> np.ndarray:
    """Float pixels: [0, 1] is scaled by 255 (rounded), larger ranges are clipped to [0, 255]."""
    a = np.nan_to_num(a.astype(np.float64), nan=0.0, posinf=255.0, neginf=0.0)
    if a.size and a.min() >= 0.0 and a.max() <= 1.0:
        return _scale_to_uint8(a, 1.0)
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB.

    Alpha is dropped, not composited (the official code does a plain ``convert("RGB")``).
    16/32-bit integer and float greyscale are rescaled instead of being clipped at 255.
    """
    mode = img.mode
    if mode == "RGB":
        return img
    if mode.startswith("I;16") or mode == "I":
        a = np.asarray(img)
        a8 = _scale_to_uint8(a, 65535.0) if mode.startswith("I;16") else _integer_to_uint8(a)
        return Image.fromarray(a8, mode="L").convert("RGB")
    if mode == "F":
        return Image.fromarray(_float_to_uint8(np.asarray(img)), mode="L").convert("RGB")
    if mode in ("P", "PA") and (mode == "PA" or "transparency" in img.info):
        # Going through RGBA gives the same RGB values and avoids Pillow's warning about
        # palette transparency given as bytes.
        return img.convert("RGBA").convert("RGB")
    try:
        return img.convert("RGB")
    except (ValueError, OSError) as e:
        raise InputError(f"cannot convert image mode {mode!r} to RGB: {e}") from None


def _array_to_image(a: np.ndarray, name: str) -> Image.Image:
    """HxW, HxWx1, HxWx3 or HxWx4 array (uint8, uint16, ints 0..255, float in [0, 1]) -> PIL."""
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] in (3, 4))):
        raise InputError(f"{name} has shape {a.shape}; expected HxW, HxWx1, HxWx3 or HxWx4")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise InputError(f"{name} is empty (shape {a.shape})")
    if a.dtype == np.uint8:
        a8 = a
    elif a.dtype == np.bool_:
        a8 = a.astype(np.uint8) * 255
    elif a.dtype == np.uint16:
        a8 = _scale_to_uint8(a, 65535.0)
    elif np.issubdtype(a.dtype, np.integer):
        lo, hi = (int(a.min()), int(a.max()))
        if lo < 0 or hi > 255:
            raise InputError(
                f"{name} has dtype {a.dtype} with values in [{lo}, {hi}]; expected 0..255 "
                "(or uint16 for 16-bit data)"
            )
        a8 = a.astype(np.uint8)
    elif np.issubdtype(a.dtype, np.floating):
        if not np.isfinite(a).all():
            raise InputError(f"{name} holds NaN or infinite values")
        lo, hi = float(a.min()), float(a.max())
        if lo < 0.0 or hi > 1.0:
            raise InputError(
                f"{name} is a float array with values in [{lo:g}, {hi:g}]; expected [0, 1] "
                "(or pass uint8 values 0..255)"
            )
        a8 = _scale_to_uint8(a, 1.0)
    else:
        raise InputError(
            f"{name} has dtype {a.dtype}; expected uint8, uint16, ints 0..255 or float in [0, 1]"
        )
    a8 = np.ascontiguousarray(a8)
    mode = "L" if a8.ndim == 2 else ("RGB" if a8.shape[2] == 3 else "RGBA")
    return to_rgb(Image.fromarray(a8, mode=mode))


def _tensor_to_array(t: torch.Tensor, name: str) -> np.ndarray:
    """CxHxW or HxWxC (or HxW) tensor -> HxW[xC] array.

    When both layouts fit, a lone 3 marks the channel axis (RGB is by far the common case);
    otherwise CxHxW wins, the torch convention.
    """
    t = t.detach().cpu()
    if t.dim() == 3:
        first, last = t.shape[0], t.shape[2]
        chw = first in (1, 3, 4)
        hwc = last in (1, 3, 4)
        if chw and hwc and last == 3 and first != 3:
            chw = False
        if chw:
            t = t.permute(1, 2, 0)
        elif not hwc:
            raise InputError(
                f"{name} has shape {tuple(t.shape)}; expected CxHxW or HxWxC with C in 1, 3, 4"
            )
    elif t.dim() != 2:
        raise InputError(f"{name} has shape {tuple(t.shape)}; expected CxHxW, HxWxC or HxW")
    if t.dtype in (torch.bfloat16, torch.float16):
        t = t.float()
    return t.contiguous().numpy()


def check_max_pixels(value: object, what: str = "max_pixels") -> int:
    """``value`` if it is a positive int; InputError naming ``what`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"{what} must be a positive integer (pixels), got {value!r}")
    return value


def default_max_pixels() -> int:
    """The pixel limit when none is given: ``$OFA_MAX_PIXELS`` if set, else 40,000,000."""
    raw = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(raw.replace("_", ""))
    except ValueError:
        value = raw  # reported below
    return check_max_pixels(value, MAX_PIXELS_ENV)


@functools.cache
def _local_formats() -> tuple[str, ...]:
    Image.init()
    return tuple(f for f in Image.OPEN if f not in _NEVER_OPENED)


def _check_pixels(size: tuple[int, int], max_pixels: int, name: str) -> None:
    width, height = size
    if width * height > max_pixels:
        raise ImageError(f"{name} is {width} x {height} = {width * height:,} pixels, above "
                         f"the limit of {max_pixels:,} (decompression bomb guard; see "
                         "--max-pixels)")


def _open_source(source: str | os.PathLike[str] | bytes, name: str) -> io.IOBase:
    if isinstance(source, bytes | bytearray | memoryview):
        if not len(source):
            raise ImageError(f"{name} is empty (0 bytes)")
        return io.BytesIO(bytes(source))
    try:
        return open(source, "rb")  # noqa: SIM115 - closed by read_image
    except OSError as e:
        raise ImageError(f"cannot read {name}: {e.strerror or e}") from None


def read_image(source: str | os.PathLike[str] | bytes, *, max_pixels: int | None = None,
               name: str = "image", formats: Sequence[str] | None = None) -> Image.Image:
    """Decode an encoded image (a file path or its bytes) to RGB, first frame only.

    The size in the header is checked against ``max_pixels`` (default:
    :func:`default_max_pixels`) before any pixel is decoded. ``formats`` limits the decoders
    tried (default: every Pillow format but EPS). Every failure raises :class:`ImageError`
    with ``name`` in its message; nothing else escapes, whatever the bytes.
    """
    limit = default_max_pixels() if max_pixels is None else check_max_pixels(max_pixels)
    accepted = tuple(formats) if formats is not None else _local_formats()
    with _open_source(source, name) as fp, warnings.catch_warnings():
        # The limit is checked from the header below; Pillow's own warning (at its larger
        # limit) would only repeat that check as two raw lines of output.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(fp, formats=accepted) as im:
                _check_pixels(im.size, limit, name)
                im.load()  # decode now so truncated files fail here, not later
                return to_rgb(im) if im.mode != "RGB" else im.copy()
        except ImageError:
            raise
        except UnidentifiedImageError:
            shown = f" (accepted formats: {', '.join(accepted)})" if formats is not None else ""
            raise ImageError(f"{name} is not a readable image file{shown}") from None
        except Image.DecompressionBombError:
            # past twice Pillow's own limit Pillow refuses before the header check can run
            hard = 2 * (Image.MAX_IMAGE_PIXELS or 0)
            above = (f"the limit of {limit:,}" if limit < hard
                     else "Pillow's own limit (2 x PIL.Image.MAX_IMAGE_PIXELS)")
            raise ImageError(f"{name} has more than {hard:,} pixels, above {above} "
                             "(decompression bomb guard)") from None
        except InputError as e:  # to_rgb on an exotic mode
            raise ImageError(f"{name}: {e}") from None
        except MemoryError:
            raise ImageError(f"{name} needs more memory to decode than is available") from None
        except Exception as e:  # noqa: BLE001 - decoders raise many types on damaged input
            reason = str(e) or type(e).__name__
            raise ImageError(f"{name} is corrupt or truncated: {reason}") from None


def load_image(image: ImageInput, *, exif_transpose: bool = False,
               max_pixels: int | None = None) -> Image.Image:
    """Return ``image`` as an RGB PIL image.

    Accepts a path, encoded file bytes, a PIL image (any mode), a numpy array (HxW, HxWx1,
    HxWx3, HxWx4; uint8, uint16 (scaled), other ints in 0..255, float in [0, 1]) or a tensor
    (CxHxW or HxWxC, same dtypes).
    ``exif_transpose`` applies the EXIF orientation; off by default because the official
    pipeline ignores it (turn it on for phone photos when parity is not the point).
    ``max_pixels`` caps files and bytes (see :func:`read_image`); images already in memory
    are not capped.
    """
    if isinstance(image, Image.Image):
        img = to_rgb(image)
    elif isinstance(image, str | os.PathLike):
        path = Path(image)
        if not path.exists():
            raise InputError(f"image file not found: {path}")
        if not path.is_file():
            raise InputError(f"image path is not a file: {path}")
        img = read_image(path, max_pixels=max_pixels, name=f"image file {path}")
    elif isinstance(image, bytes | bytearray | memoryview):
        img = read_image(bytes(image), max_pixels=max_pixels, name="image bytes")
    elif isinstance(image, np.ndarray):
        img = _array_to_image(image, "image array")
    elif isinstance(image, torch.Tensor):
        img = _array_to_image(_tensor_to_array(image, "image tensor"), "image tensor")
    else:
        raise InputError(
            f"unsupported image input of type {type(image).__name__}; pass a path, bytes, "
            "PIL image, numpy array or torch tensor"
        )
    if exif_transpose:
        img = to_rgb(ImageOps.exif_transpose(img))
    return img


# ---------------------------------------------------------------------- transforms


def resize_image(img: Image.Image, size: int) -> Image.Image:
    """Bicubic squash to ``size`` x ``size`` (torchvision ``Resize((S, S), BICUBIC)`` on PIL)."""
    return img.resize((size, size), Image.BICUBIC)


def resize_as(img: Image.Image, size: int, mode: str = "squash") -> Image.Image:
    """``img`` at ``size`` x ``size`` by a :data:`RESIZE_MODES` mode: the bicubic squash of
    every task, or OFA-OCR's aspect-keeping resize and edge padding (``ocr``,
    ``ocr_document``; :func:`ofa.preprocess_ocr.ocr_resize`)."""
    if _check_resize(mode) == "squash":
        return resize_image(img, size)
    from .preprocess_ocr import ocr_resize

    return ocr_resize(img, size, document=mode == "ocr_document")


def _check_resize(mode: str) -> str:
    if mode not in RESIZE_MODES:
        raise InputError(f"resize must be one of {', '.join(RESIZE_MODES)}, got {mode!r}")
    return mode


def _check_stats(mean: Sequence[float], std: Sequence[float]) -> tuple[torch.Tensor, ...]:
    m = torch.as_tensor(mean, dtype=torch.float32)
    s = torch.as_tensor(std, dtype=torch.float32)
    if m.shape != (3,) or s.shape != (3,):
        raise InputError(f"mean and std need 3 values each, got {list(mean)} and {list(std)}")
    if bool((s == 0).any()):
        raise InputError(f"std must be non-zero, got {list(std)}")
    return m.view(3, 1, 1), s.view(3, 1, 1)


def _check_size(size: int) -> int:
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
        raise InputError(f"image size must be a positive int, got {size!r}")
    return size


def image_pixels(img: Image.Image) -> torch.Tensor:
    """The uint8 (3, H, W) tensor of an RGB image, contiguous (what a cache keeps)."""
    return torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1).contiguous()


def _normalize(pixels: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    # ToTensor: float32 division by 255; Normalize: sub then div with float32 stats.
    return pixels.to(torch.float32).div(255).sub(mean).div(std)


def _to_tensor(img: Image.Image, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    return _normalize(image_pixels(img), mean, std)


RESIZE_MODES = ("squash", "ocr", "ocr_document")


@dataclass(frozen=True)
class PreprocessCfg:
    """How a task's images become model input: resized to ``size`` x ``size`` (bicubic, the
    aspect ratio not kept, as the official pipeline does), then normalised by ``mean`` and
    ``std``. ``size`` is the official ``patch_image_size`` of the task's fine-tuning."""

    size: int
    mean: tuple[float, float, float] = OFA_MEAN
    std: tuple[float, float, float] = OFA_STD
    # "squash" (every task but OCR), "ocr" (OFA-OCR: aspect kept, edge-padded to a square) or
    # "ocr_document" (OFA-OCR's document mode: four 64-px rows), see ofa.preprocess_ocr
    resize: str = "squash"

    def with_size(self, size: int | None) -> PreprocessCfg:
        """The same preprocessing at another size (a checkpoint trained at its own); None
        keeps this one."""
        return self if size is None else dataclasses.replace(self, size=size)


class ImageTransform:
    """Callable ``image -> FloatTensor (3, size, size)``; ``batch`` also returns original sizes."""

    def __init__(
        self,
        size: int,
        mean: Sequence[float] = OFA_MEAN,
        std: Sequence[float] = OFA_STD,
        max_pixels: int | None = None,
        resize: str = "squash",
    ) -> None:
        self.size = _check_size(size)
        self.mode = _check_resize(resize)
        self.mean = tuple(float(v) for v in mean)
        self.std = tuple(float(v) for v in std)
        self._mean, self._std = _check_stats(self.mean, self.std)
        # None: read_image's default, looked up at each load so $OFA_MAX_PIXELS applies
        self.max_pixels = None if max_pixels is None else check_max_pixels(max_pixels)

    @classmethod
    def from_cfg(cls, cfg: PreprocessCfg, max_pixels: int | None = None) -> ImageTransform:
        """The transform a task's preprocessing describes (``ofa.tasks.TASKS[name].preprocess``)."""
        return cls(cfg.size, cfg.mean, cfg.std, max_pixels=max_pixels, resize=cfg.resize)

    def __call__(self, image: ImageInput) -> torch.Tensor:
        return self.normalize(self.resize(self.load(image)))

    def resize(self, image: Image.Image) -> Image.Image:
        """``image`` resized to ``size`` x ``size`` as this transform's mode says."""
        return resize_as(image, self.size, self.mode)

    def load(self, image: ImageInput) -> Image.Image:
        """``image`` as RGB (:func:`load_image` under this transform's pixel limit)."""
        return load_image(image, max_pixels=self.max_pixels)

    def normalize(self, resized: Image.Image | torch.Tensor) -> torch.Tensor:
        """The tensor of an RGB image already resized to ``size`` (see :func:`resize_image`),
        given as a PIL image or as its :func:`image_pixels`."""
        if not isinstance(resized, torch.Tensor):
            return _to_tensor(resized, self._mean, self._std)
        if resized.dtype != torch.uint8 or resized.shape != (3, self.size, self.size):
            raise InputError(f"expected uint8 pixels of shape (3, {self.size}, {self.size}), "
                             f"got {resized.dtype} {tuple(resized.shape)}")
        return _normalize(resized, self._mean, self._std)

    def batch(self, images: Sequence[ImageInput]) -> tuple[torch.Tensor, list[tuple[int, int]]]:
        """Stack to ``(B, 3, size, size)`` and return each original ``(width, height)``."""
        if isinstance(images, np.ndarray | torch.Tensor) and images.ndim == 4:
            images = list(images)  # a stacked batch of arrays/tensors
        elif isinstance(
            images, str | bytes | os.PathLike | Image.Image | np.ndarray | torch.Tensor
        ):
            images = [images]
        if len(images) == 0:
            raise InputError("no images given")
        tensors, sizes = [], []
        for image in images:
            img = self.load(image)
            sizes.append(img.size)
            tensors.append(_to_tensor(self.resize(img), self._mean, self._std))
        return torch.stack(tensors), sizes

    def __repr__(self) -> str:
        return f"ImageTransform(size={self.size}, mean={self.mean}, std={self.std})"


def preprocess_image(
    image: ImageInput,
    size: int,
    mean: Sequence[float] = OFA_MEAN,
    std: Sequence[float] = OFA_STD,
) -> torch.Tensor:
    """One image -> normalised FloatTensor ``(3, size, size)``."""
    return ImageTransform(size, mean, std)(image)


def preprocess_images(
    images: Sequence[ImageInput],
    size: int,
    mean: Sequence[float] = OFA_MEAN,
    std: Sequence[float] = OFA_STD,
) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """Images -> ``(B, 3, size, size)`` FloatTensor and the original ``(width, height)`` list."""
    return ImageTransform(size, mean, std).batch(images)
