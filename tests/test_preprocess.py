"""Image loading (every PIL mode, arrays, tensors, bad files) and official preprocessing parity."""

import io
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ofa.errors import InputError
from ofa.preprocess import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    OFA_MEAN,
    OFA_STD,
    ImageError,
    ImageTransform,
    image_pixels,
    load_image,
    preprocess_image,
    preprocess_images,
    read_image,
    to_rgb,
)
from ofa.tasks import TASKS, get_task

from bomb_images import png_1bit

W, H = 6, 4  # small, non-square: catches width/height mix-ups


def _rgb(img: Image.Image) -> np.ndarray:
    assert img.mode == "RGB"
    return np.asarray(img)


def _gray(value: int) -> np.ndarray:
    return np.full((H, W, 3), value, dtype=np.uint8)


# ---------------------------------------------------------------------- PIL modes


def test_mode_files_convert(tmp_path: Path) -> None:
    """Each mode saved to disk, loaded back through load_image(path), gives the right pixels."""
    rgb = np.zeros((H, W, 3), dtype=np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 200, 100, 50

    gray = Image.new("L", (W, H), 77)
    gray.save(tmp_path / "l.png")
    np.testing.assert_array_equal(_rgb(load_image(tmp_path / "l.png")), _gray(77))

    la = Image.merge("LA", (Image.new("L", (W, H), 90), Image.new("L", (W, H), 0)))
    la.save(tmp_path / "la.png")
    np.testing.assert_array_equal(_rgb(load_image(str(tmp_path / "la.png"))), _gray(90))

    # RGBA: alpha is dropped, not composited (a fully transparent pixel keeps its colour).
    rgba = np.dstack([rgb, np.zeros((H, W), np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    np.testing.assert_array_equal(_rgb(load_image(tmp_path / "rgba.png")), rgb)

    # Palette with a multi-entry tRNS chunk (transparency as bytes) must not warn.
    pal = Image.new("P", (W, H), 1)
    pal.putpalette([0, 0, 0, 10, 20, 30] + [0] * (256 * 3 - 6))
    pal.info["transparency"] = bytes([255, 128])  # partial alpha: stored as bytes
    pal.save(tmp_path / "p_trns.png")
    reopened = Image.open(tmp_path / "p_trns.png")
    assert reopened.mode == "P" and isinstance(reopened.info["transparency"], bytes)
    reopened.close()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = _rgb(load_image(tmp_path / "p_trns.png"))
    np.testing.assert_array_equal(out, np.broadcast_to(np.array([10, 20, 30], np.uint8), out.shape))

    pal_plain = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE)
    pal_plain.save(tmp_path / "p.png")
    np.testing.assert_array_equal(_rgb(load_image(tmp_path / "p.png")), rgb)

    cmyk = Image.new("CMYK", (W, H), (0, 255, 255, 0))  # pure red
    cmyk.save(tmp_path / "cmyk.tif")
    out = _rgb(load_image(tmp_path / "cmyk.tif"))
    np.testing.assert_array_equal(out, np.broadcast_to(np.array([255, 0, 0], np.uint8), out.shape))

    # 16-bit greyscale PNG (opens as I;16): scaled by 255/65535, not clipped at 255.
    a16 = np.array([[0, 257 * 100, 1000, 65535, 32768, 65534]] * H, dtype=np.uint16)
    Image.fromarray(a16).save(tmp_path / "g16.png")
    with Image.open(tmp_path / "g16.png") as im:
        assert im.mode.startswith("I;16")
    out = _rgb(load_image(tmp_path / "g16.png"))
    np.testing.assert_array_equal(out[0, :, 0], [0, 100, 4, 255, 128, 255])
    np.testing.assert_array_equal(out[..., 0], out[..., 2])

    # 1-bit
    Image.new("1", (W, H), 1).save(tmp_path / "bw.png")
    np.testing.assert_array_equal(_rgb(load_image(tmp_path / "bw.png")), _gray(255))

    # JPEG stays RGB with the right size.
    Image.fromarray(rgb).save(tmp_path / "rgb.jpg", quality=95)
    img = load_image(tmp_path / "rgb.jpg")
    assert img.mode == "RGB" and img.size == (W, H)


def test_in_memory_modes() -> None:
    # 32-bit "I": 0..255 kept, 16-bit range rescaled, anything else stretched to 0..255.
    small = Image.fromarray(np.full((H, W), 200, np.int32), mode="I")
    np.testing.assert_array_equal(_rgb(to_rgb(small)), _gray(200))
    mid = Image.fromarray(np.array([[0, 65535] * 3] * H, np.int32), mode="I")
    np.testing.assert_array_equal(_rgb(to_rgb(mid))[0, :2, 0], [0, 255])
    wide = Image.fromarray(np.array([[-1000, 1000] * 3] * H, np.int32), mode="I")
    np.testing.assert_array_equal(_rgb(to_rgb(wide))[0, :2, 0], [0, 255])

    # "F": [0, 1] is scaled by 255; wider ranges are clipped to 0..255.
    unit = Image.fromarray(np.array([[0.0, 0.5, 1.0] * 2] * H, np.float32), mode="F")
    np.testing.assert_array_equal(_rgb(to_rgb(unit))[0, :3, 0], [0, 128, 255])
    byte = Image.fromarray(np.array([[0.0, 100.0, 300.0] * 2] * H, np.float32), mode="F")
    np.testing.assert_array_equal(_rgb(to_rgb(byte))[0, :3, 0], [0, 100, 255])

    ycc = Image.new("RGB", (W, H), (10, 200, 30)).convert("YCbCr")
    assert to_rgb(ycc).mode == "RGB"

    rgb = Image.new("RGB", (W, H), (1, 2, 3))
    assert load_image(rgb).getpixel((0, 0)) == (1, 2, 3)


# ---------------------------------------------------------------------- arrays and tensors


def test_numpy_inputs() -> None:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    np.testing.assert_array_equal(_rgb(load_image(rgb)), rgb)
    np.testing.assert_array_equal(_rgb(load_image(rgb[:, :, :1])), np.repeat(rgb[:, :, :1], 3, 2))
    np.testing.assert_array_equal(_rgb(load_image(rgb[:, :, 0])), np.repeat(rgb[:, :, :1], 3, 2))
    rgba = np.dstack([rgb, np.zeros((H, W), np.uint8)])
    np.testing.assert_array_equal(_rgb(load_image(rgba)), rgb)
    # float in [0, 1]: rounded, so uint8 -> /255 -> back is exact.
    np.testing.assert_array_equal(_rgb(load_image(rgb.astype(np.float32) / 255)), rgb)
    np.testing.assert_array_equal(_rgb(load_image(rgb / 255.0)), rgb)
    np.testing.assert_array_equal(_rgb(load_image(np.full((H, W), 0.5))), _gray(128))
    np.testing.assert_array_equal(_rgb(load_image(np.full((H, W), 65535, np.uint16))), _gray(255))
    np.testing.assert_array_equal(_rgb(load_image(np.full((H, W), 7, np.int64))), _gray(7))
    # Non-contiguous views work.
    np.testing.assert_array_equal(_rgb(load_image(rgb[:, ::-1])), rgb[:, ::-1])


def test_tensor_inputs() -> None:
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    hwc = torch.from_numpy(rgb)  # (4, 6, 3): 4 could be channels too; the 3 decides
    chw = hwc.permute(2, 0, 1)
    np.testing.assert_array_equal(_rgb(load_image(hwc)), rgb)
    np.testing.assert_array_equal(_rgb(load_image(chw)), rgb)
    np.testing.assert_array_equal(_rgb(load_image(chw.float() / 255)), rgb)
    np.testing.assert_array_equal(_rgb(load_image(chw[:1])), np.repeat(rgb[:, :, :1], 3, 2))
    np.testing.assert_array_equal(_rgb(load_image(hwc[:, :, 0])), np.repeat(rgb[:, :, :1], 3, 2))
    big = torch.randint(0, 256, (20, 30, 3), dtype=torch.uint8)
    np.testing.assert_array_equal(_rgb(load_image(big)), big.numpy())
    np.testing.assert_array_equal(_rgb(load_image(big.permute(2, 0, 1))), big.numpy())
    # Truly ambiguous shapes (3x4x4 could be CxHxW or HxWxC with C=4) follow torch: CxHxW.
    amb = torch.randint(0, 256, (3, 4, 4), dtype=torch.uint8)
    np.testing.assert_array_equal(_rgb(load_image(amb)), amb.permute(1, 2, 0).numpy())


@pytest.mark.parametrize(
    ("array", "match"),
    [
        (np.zeros((H, W, 2), np.uint8), "shape"),
        (np.zeros((H, W, 5), np.uint8), "shape"),
        (np.zeros((2, H, W, 3), np.uint8), "shape"),
        (np.zeros(W, np.uint8), "shape"),
        (np.zeros((0, W, 3), np.uint8), "empty"),
        (np.full((H, W), 2.0), r"\[0, 1\]"),
        (np.full((H, W), -0.1), r"\[0, 1\]"),
        (np.full((H, W), np.nan), "NaN"),
        (np.full((H, W), 300, np.int32), "0..255"),
        (np.zeros((H, W), np.complex64), "dtype"),
        (torch.zeros(5, 7, 9), "shape"),
        (torch.zeros(1, 3, H, W), "shape"),
    ],
)
def test_bad_arrays(array: object, match: str) -> None:
    with pytest.raises(InputError, match=match):
        load_image(array)  # type: ignore[arg-type]


# ---------------------------------------------------------------------- files


def test_file_errors(tmp_path: Path) -> None:
    missing = tmp_path / "nope.jpg"
    with pytest.raises(InputError, match="not found.*nope.jpg"):
        load_image(missing)
    with pytest.raises(InputError, match="not a file"):
        load_image(tmp_path)
    text = tmp_path / "notes.png"
    text.write_text("this is not an image")
    with pytest.raises(InputError, match="notes.png.*not a readable image"):
        load_image(text)
    with pytest.raises(InputError, match="unsupported"):
        load_image(12345)  # type: ignore[arg-type]

    pixels = np.random.default_rng(2).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    for fmt, name in (("PNG", "cut.png"), ("JPEG", "cut.jpg")):
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, format=fmt)
        data = buf.getvalue()
        (tmp_path / name).write_bytes(data[: len(data) // 2])
        with pytest.raises(InputError, match=f"{name}.*corrupt"):
            load_image(tmp_path / name)
        # The intact bytes load fine, also given directly as bytes.
        assert load_image(data).size == (64, 64)
    with pytest.raises(InputError, match="not a readable image"):
        load_image(b"garbage bytes")


def test_huge_image_is_refused_from_its_header_fast_and_quietly(tmp_path: Path) -> None:
    # 12000 x 12000 decodes to 144 M pixels (13.5 s, 1.1 GB as RGB); the file is ~20 KB
    huge = tmp_path / "huge.png"
    huge.write_bytes(png_1bit(12000, 12000))
    assert huge.stat().st_size < 50_000
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Pillow's DecompressionBombWarning must not show
        with pytest.raises(ImageError, match=r"huge.png is 12000 x 12000 = 144,000,000 "
                                             r"pixels, above the limit of 40,000,000 "
                                             r"\(decompression bomb guard"):
            load_image(huge)
    assert time.perf_counter() - start < 1.0  # refused from the header, nothing decoded
    # past twice Pillow's own limit, Pillow refuses before our check: still one ImageError
    bigger = png_1bit(20000, 20000)
    with pytest.raises(ImageError, match=r"image bytes has more than 178,956,970 pixels, "
                                         r"above the limit of 40,000,000 \(decompression"):
        load_image(bigger)
    with pytest.raises(ImageError, match=r"above Pillow's own limit \(2 x PIL.Image.MAX_IMAGE"):
        load_image(bigger, max_pixels=10**12)


def test_pixel_limit_is_a_parameter_and_an_environment_variable(tmp_path: Path,
                                                                monkeypatch) -> None:
    path = tmp_path / "small.png"
    Image.new("RGB", (50, 40)).save(path)
    assert load_image(path, max_pixels=2000).size == (50, 40)
    with pytest.raises(ImageError, match="50 x 40 = 2,000 pixels, above the limit of 1,999"):
        load_image(path, max_pixels=1999)
    monkeypatch.setenv("OFA_MAX_PIXELS", "1999")
    with pytest.raises(ImageError, match="1,999"):
        load_image(path.read_bytes())
    with pytest.raises(ImageError, match="1,999"):
        ImageTransform(8)(path)
    assert ImageTransform(8, max_pixels=2000)(path).shape == (3, 8, 8)  # the argument wins
    # arrays and PIL images are already in memory: nothing left to guard
    assert load_image(np.zeros((60, 60, 3), np.uint8)).size == (60, 60)
    monkeypatch.setenv("OFA_MAX_PIXELS", "lots")
    with pytest.raises(InputError, match="OFA_MAX_PIXELS must be a positive integer"):
        load_image(path)
    for bad in (0, -5, 2.5, True):
        with pytest.raises(InputError, match="max_pixels must be a positive integer"):
            load_image(path, max_pixels=bad)  # type: ignore[arg-type]


def test_eps_is_never_handed_to_ghostscript() -> None:
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n%%EOF\n"
    with Image.open(io.BytesIO(eps)) as im:
        assert im.format == "EPS"  # Pillow would take it (and run Ghostscript on load)
    with pytest.raises(ImageError, match="not a readable image"):
        load_image(eps)


def test_file_that_cannot_be_opened_is_one_image_error(tmp_path: Path) -> None:
    # load_image checks paths first; read_image itself must not leak an OSError either
    with pytest.raises(ImageError, match="cannot read image file .*: Is a directory"):
        read_image(tmp_path, name=f"image file {tmp_path}")
    with pytest.raises(ImageError, match="cannot read image: No such file"):
        read_image(tmp_path / "gone.png")


def test_exif_orientation_is_opt_in(tmp_path: Path) -> None:
    img = Image.new("RGB", (W, H), (10, 20, 30))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    img.save(tmp_path / "rot.jpg", exif=exif)
    assert load_image(tmp_path / "rot.jpg").size == (W, H)  # official: EXIF ignored
    assert load_image(tmp_path / "rot.jpg", exif_transpose=True).size == (H, W)


# ---------------------------------------------------------------------- preprocessing


def test_preprocess_matches_manual_formula() -> None:
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    out = preprocess_image(rgb, 32)
    assert out.shape == (3, 32, 32) and out.dtype == torch.float32
    resized = np.asarray(Image.fromarray(rgb).resize((32, 32), Image.BICUBIC))
    x = torch.from_numpy(resized.copy()).permute(2, 0, 1).float()
    assert torch.equal(out, (x / 255 - 0.5) / 0.5)
    assert out.min() >= -1 and out.max() <= 1

    imnet = preprocess_image(rgb, 32, IMAGENET_MEAN, IMAGENET_STD)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    assert torch.equal(imnet, (x / 255 - mean) / std)


def test_normalize_takes_pixels_or_pil() -> None:
    rgb = np.random.default_rng(4).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    transform = ImageTransform(32, IMAGENET_MEAN, IMAGENET_STD)
    pixels = image_pixels(Image.fromarray(rgb))
    assert pixels.dtype == torch.uint8 and pixels.shape == (3, 32, 32) and pixels.is_contiguous()
    assert torch.equal(transform.normalize(pixels), transform.normalize(Image.fromarray(rgb)))
    for bad in (pixels.float(), pixels[:, :16]):
        with pytest.raises(InputError, match="uint8 pixels"):
            transform.normalize(bad)


def test_preprocess_images_and_tasks() -> None:
    a = np.zeros((10, 30, 3), np.uint8)
    b = np.full((40, 20, 3), 255, np.uint8)
    batch, sizes = preprocess_images([a, b], 16)
    assert batch.shape == (2, 3, 16, 16) and sizes == [(30, 10), (20, 40)]
    assert torch.all(batch[0] == -1) and torch.all(batch[1] == 1)
    stacked, sizes = ImageTransform(16).batch(np.stack([a[:, :10], a[:, :10]]))
    assert stacked.shape == (2, 3, 16, 16) and sizes == [(10, 10), (10, 10)]

    # patch_image_size of the official fine-tuning scripts; ImageNet mean/std only for the
    # ImageNet fine-tune
    assert {name: t.image_size for name, t in TASKS.items()} == {
        "caption": 480, "vqa": 480, "ground": 512, "entail": 480, "classify": 480,
        "summarize": None, "generate": 480, "imagine": None, "ocr": 480, "glue": None}
    t = ImageTransform.from_cfg(get_task("ground").preprocess)
    assert (t.size, t.mean, t.std) == (512, OFA_MEAN, OFA_STD)
    t = ImageTransform.from_cfg(get_task("classify").preprocess)
    assert (t.size, t.mean, t.std) == (480, IMAGENET_MEAN, IMAGENET_STD)
    with pytest.raises(InputError, match="unknown task"):
        get_task("region_caption")
    t = ImageTransform.from_cfg(get_task("ocr").preprocess)
    assert (t.size, t.mode) == (480, "ocr")
    with pytest.raises(InputError, match="resize must be one of"):
        ImageTransform(8, resize="crop")
    for bad in (0, -3, 2.5, True):
        with pytest.raises(InputError):
            ImageTransform(bad)  # type: ignore[arg-type]
    with pytest.raises(InputError):
        ImageTransform(8, mean=(0.5, 0.5))
    with pytest.raises(InputError):
        ImageTransform(8, std=(0.5, 0.0, 0.5))
    with pytest.raises(InputError):
        preprocess_images([], 8)


def test_chelsea_parity(shared_dir: Path, tmp_path: Path) -> None:
    """Official PIL bicubic resize + normalisation, bit for bit against the oracle case."""
    path = shared_dir / "oracle" / "cases" / "caption_chelsea.safetensors"
    if not path.is_file():
        pytest.skip(f"oracle case missing: {path}")
    from safetensors.torch import load_file

    case = load_file(str(path))
    orig = case["image_orig_uint8_0"]
    assert orig.shape[2] == 3 and orig.dtype == torch.uint8
    img = load_image(orig.numpy())
    resized = img.resize((480, 480), Image.BICUBIC)
    got_u8 = torch.from_numpy(np.array(resized)).permute(2, 0, 1)
    assert torch.equal(got_u8, case["image_uint8"][0])

    batch, sizes = preprocess_images([orig.numpy()], TASKS["caption"].image_size)
    assert sizes == [(orig.shape[1], orig.shape[0])]
    assert batch.dtype == torch.float32
    assert (batch - case["image_input"]).abs().max().item() == 0.0
    # Same through a lossless file on disk and as an HxWxC tensor.
    Image.fromarray(orig.numpy()).save(tmp_path / "chelsea.png")
    assert torch.equal(preprocess_image(tmp_path / "chelsea.png", 480), case["image_input"][0])
    assert torch.equal(preprocess_image(orig, 480), case["image_input"][0])
