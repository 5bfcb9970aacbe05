"""Parity of :mod:`ofa.metrics.inception` with the reference Inception-v3 code, random weights.

    .venv/bin/python benchmarks/inception_parity.py [--fidelity-wheel W] [--torchvision-wheel W]

Neither reference can be imported here as a package (both pull in torchvision, whose wheel
does not load next to the CPU torch), so each reference module is loaded from its wheel's
file, unpacked into a temporary folder, next to stub packages that leave torchvision out:

* ``tf-fid``: torch-fidelity's ``FeatureExtractorInceptionV3`` (the FID Inception with
  TensorFlow 1.x's resize, the extractor torchmetrics wraps), built with random weights that
  are saved in its layout and loaded into ours by :func:`ofa.metrics.inception.load_inception`;
  compared: the 2048-d pool features (FID) and the unbiased 1008-class logits (IS);
* ``imagenet``: torchvision's ``Inception3`` (ImageNet, 1000 classes, auxiliary classifier)
  run the way OFA-Sys/OFA ``run_scripts/image_gen/fid_score.py`` + ``eval_utils/inceptionV3.py``
  (blocks up to the average pool, its channel formula) and ``inception_score.py`` (the full
  classifier on [0, 1] pixels) run it, after ``transforms.Resize((299, 299))`` on the PIL
  image, i.e. Pillow's bilinear resize, and ``ToTensor``;
* the key layout of pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth``: torchvision's
  ``Inception3(num_classes=1008, aux_logits=False)`` (how pytorch-fid builds the network it
  loads that file into) has exactly torch-fidelity's keys.

Images: random uint8 at 299 x 299 (no resize), 256 x 256 (OFA's generated images: upsampled)
and 480 x 640 (a COCO-sized reference image: downsampled). Weights: He-scaled random
convolutions and random batch-norm statistics, so activations stay of order one through the
network (PyTorch's default init shrinks them towards zero, which would hide differences).
Without wheel paths the script runs ``pip download --no-deps`` (network needed) into the
temporary folder.
"""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
import tempfile
import types
import zipfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ofa.metrics.inception import load_inception

FIDELITY = "torch-fidelity==0.4.0"
TORCHVISION = "torchvision==0.28.0"
FIDELITY_FILES = ("__init__.py", "helpers.py", "defaults.py", "deprecations.py",
                  "feature_extractor_base.py", "interpolate_compat_tensorflow.py",
                  "feature_extractor_inceptionv3.py")
SIZES = ((299, 299), (256, 256), (480, 640))


def wheel(given: str | None, spec: str, tmp: Path) -> Path:
    if given:
        return Path(given)
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", spec, "-d",
                    str(tmp / "wheels")], check=True, capture_output=True)
    name = spec.split("==")[0].replace("-", "_")
    return next((tmp / "wheels").glob(f"{name}-*.whl"))


def unpack(whl: Path, members: list[str], dest: Path) -> None:
    with zipfile.ZipFile(whl) as z:
        for m in members:
            target = dest / m
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(z.read(m))


def load_fidelity(whl: Path, root: Path):
    """torch_fidelity.feature_extractor_inceptionv3 with an empty package __init__ (the real
    one imports every metric, torchvision among them)."""
    unpack(whl, [f"torch_fidelity/{f}" for f in FIDELITY_FILES if f != "__init__.py"], root)
    (root / "torch_fidelity" / "__init__.py").write_text("")
    sys.path.insert(0, str(root))
    return importlib.import_module("torch_fidelity.feature_extractor_inceptionv3")


def load_torchvision_inception(whl: Path, root: Path):
    """torchvision/models/inception.py with stub modules for its imports of the rest of
    torchvision (weights registry, presets, logging), none of which the network uses."""
    unpack(whl, ["torchvision/models/inception.py"], root)
    stubs: dict[str, dict] = {
        "torchvision": {"__version__": "0.28.0"},
        "torchvision.transforms": {},
        "torchvision.transforms._presets": {"ImageClassification": object},
        "torchvision.utils": {"_log_api_usage_once": lambda *a, **k: None},
        "torchvision.models": {},
        "torchvision.models._api": {
            "register_model": lambda *a, **k: (lambda f: f),
            "Weights": lambda *a, **k: None, "WeightsEnum": object},
        "torchvision.models._meta": {"_IMAGENET_CATEGORIES": []},
        "torchvision.models._utils": {
            "_ovewrite_named_param": lambda *a, **k: None,
            "handle_legacy_interface": lambda *a, **k: (lambda f: f)},
    }
    for name, attrs in stubs.items():
        mod = types.ModuleType(name)
        mod.__dict__.update(attrs)
        if "." not in name or name in ("torchvision.transforms", "torchvision.models"):
            mod.__path__ = [str(root / name.replace(".", "/"))]  # a package
        sys.modules[name] = mod
    return importlib.import_module("torchvision.models.inception")


def randomize(model: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for name, t in model.state_dict().items():
        if name.endswith("num_batches_tracked"):
            continue
        if t.dim() == 4:  # convolutions: He scale
            t.copy_(torch.randn(t.shape, generator=g) * (2.0 / t[0].numel()) ** 0.5)
        elif name.endswith("running_var"):
            t.copy_(0.5 + torch.rand(t.shape, generator=g))
        elif name.endswith("bn.weight"):
            t.copy_(1 + 0.1 * torch.randn(t.shape, generator=g))
        elif t.dim() == 2:  # classifiers
            t.copy_(torch.randn(t.shape, generator=g) / t.shape[1] ** 0.5)
        else:  # biases, running means
            t.copy_(0.1 * torch.randn(t.shape, generator=g))


def images(seed: int = 0, n: int = 3) -> dict[tuple[int, int], torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {hw: torch.randint(0, 256, (n, 3, *hw), generator=g, dtype=torch.uint8)
            for hw in SIZES}


def diff(a: torch.Tensor, b: torch.Tensor) -> str:
    d = (a.double() - b.double()).abs().max().item()
    scale = b.double().abs().max().item()
    return f"{d:.2e} (largest value {scale:.3g})"


def blank_fidelity(fe_module):
    """torch-fidelity's extractor with PyTorch's initial weights: its constructor's weight
    download answered by an empty dict, which a subclass's load_state_dict ignores."""
    fe_module.load_state_dict_from_url = lambda *args, **kwargs: {}

    class Blank(fe_module.FeatureExtractorInceptionV3):
        def load_state_dict(self, state_dict, strict=True, assign=False):
            return None

    return Blank("inception-v3-compat", ["2048", "logits_unbiased"])


def check_fidelity(fe_module, tmp: Path) -> list[str]:
    blank = blank_fidelity(fe_module)
    randomize(blank, 1)
    path = tmp / "weights-inception-2015-12-05-random.pth"
    torch.save(blank.state_dict(), path)
    ref = fe_module.FeatureExtractorInceptionV3(
        "inception-v3-compat", ["2048", "logits_unbiased"],
        feature_extractor_weights_path=str(path))
    ours = load_inception(path)
    assert ours.kind == "tf-fid"
    rows = []
    for hw, x in images().items():
        pool_ref, logits_ref = ref(x)
        pool, logits = ours(x)
        rows.append(f"| tf-fid (torch-fidelity) | {hw[0]}x{hw[1]} | {diff(pool, pool_ref)} | "
                    f"{diff(logits, logits_ref)} |")
    # control: the same weights through torchvision's pooling (zeros counted, no max pool)
    # must differ, or the comparison could not see a wrong network
    for block in (ours.Mixed_5b, ours.Mixed_5c, ours.Mixed_5d, ours.Mixed_6b, ours.Mixed_6c,
                  ours.Mixed_6d, ours.Mixed_6e, ours.Mixed_7b, ours.Mixed_7c):
        block.pool = "avg"
    x = images()[(256, 256)]
    (pool_ref, logits_ref), (pool, logits) = ref(x), ours(x)
    rows.append(f"| control: tf-fid weights, torchvision pools | 256x256 | "
                f"{diff(pool, pool_ref)} | {diff(logits, logits_ref)} |")
    return rows


def ofa_reference(net, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """OFA's fid_score.py features and inception_score.py logits of uint8 images ``x``."""
    pils = [Image.fromarray(a).resize((299, 299), Image.BILINEAR)
            for a in x.permute(0, 2, 3, 1).numpy()]
    t = torch.stack([torch.from_numpy(np.array(p).transpose(2, 0, 1)).float().div(255)
                     for p in pils])
    with torch.no_grad():
        # eval_utils/inceptionV3.py: upsample to 299 (align_corners=True; a no-op at 299),
        # then its channel formula, then the blocks up to the average pool
        y = torch.nn.functional.interpolate(t, size=(299, 299), mode="bilinear",
                                            align_corners=True)
        y = y.clone()
        y[:, 0] = y[:, 0] * (0.229 / 0.5) + (0.485 - 0.5) / 0.5
        y[:, 1] = y[:, 1] * (0.224 / 0.5) + (0.456 - 0.5) / 0.5
        y[:, 2] = y[:, 2] * (0.225 / 0.5) + (0.406 - 0.5) / 0.5
        for layer in (net.Conv2d_1a_3x3, net.Conv2d_2a_3x3, net.Conv2d_2b_3x3, net.maxpool1,
                      net.Conv2d_3b_1x1, net.Conv2d_4a_3x3, net.maxpool2, net.Mixed_5b,
                      net.Mixed_5c, net.Mixed_5d, net.Mixed_6a, net.Mixed_6b, net.Mixed_6c,
                      net.Mixed_6d, net.Mixed_6e, net.Mixed_7a, net.Mixed_7b, net.Mixed_7c,
                      net.avgpool):
            y = layer(y)
        logits = net(t)  # inception_score.py: transform_input=False, [0, 1] pixels
    return y.flatten(1), logits


def check_imagenet(tv, fe_module, tmp: Path) -> tuple[list[str], str]:
    net = tv.Inception3(num_classes=1000, aux_logits=True, transform_input=False,
                        init_weights=False).eval()
    randomize(net, 2)
    path = tmp / "inception_v3_google-random.pth"
    torch.save(net.state_dict(), path)
    ours = load_inception(path)
    assert ours.kind == "imagenet"
    rows = []
    for hw, x in images(seed=1).items():
        pool_ref, logits_ref = ofa_reference(net, x)
        pool, logits = ours(x)
        rows.append(f"| imagenet (OFA's scripts) | {hw[0]}x{hw[1]} | {diff(pool, pool_ref)} | "
                    f"{diff(logits, logits_ref)} |")
    fid_keys = set(tv.Inception3(num_classes=1008, aux_logits=False,
                                 init_weights=False).state_dict())
    same = fid_keys == set(blank_fidelity(fe_module).state_dict())
    layout = (f"pytorch-fid's layout (torchvision Inception3, 1008 classes, no aux) has "
              f"{'the same' if same else 'DIFFERENT'} {len(fid_keys)} keys as torch-fidelity's")
    return rows, layout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fidelity-wheel", help=f"{FIDELITY} wheel (default: pip download)")
    parser.add_argument("--torchvision-wheel", help=f"{TORCHVISION} wheel (default: pip "
                                                    "download)")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        fe = load_fidelity(wheel(args.fidelity_wheel, FIDELITY, tmp), tmp / "src")
        tv = load_torchvision_inception(wheel(args.torchvision_wheel, TORCHVISION, tmp),
                                        tmp / "src")
        rows = check_fidelity(fe, tmp)
        more, layout = check_imagenet(tv, fe, tmp)
    print("| weights | input | pool features max abs diff | logits max abs diff |")
    print("|---|---|---|---|")
    print("\n".join(rows + more))
    print(layout)


if __name__ == "__main__":
    main()
