"""The embedded demo model: a small OFA trained from scratch on ShapesWorld, shipped with the
package (fp16 safetensors) so that every task runs offline without an official checkpoint.

``ofa demo`` captions the demo image, answers a question about it and grounds an object.
``make demo-model`` rebuilds the model: it writes ShapesWorld, trains ``configs/shapes-demo.yaml``
and calls :func:`export_demo`.

The registry knows the folder as ``shapes-demo`` (a bundled entry of :mod:`ofa.pretrained`). It
is a native folder like any other, which carries what else the model needs: its input size
(``source.image_size`` in ``config.json``) and its VQA answer list (``answers.txt``, read by
:func:`ofa.checkpoints.model_answers`).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch

from .errors import InputError
from .files import replace_folder

DEMO_NAME = "shapes-demo"
ASSETS = Path(__file__).resolve().parent / "assets"
DEMO_DIR = ASSETS / DEMO_NAME
DEMO_IMAGE = ASSETS / "demo.png"
DEMO_QUERIES = ASSETS / "demo.json"


def demo_texts(world_seed: int = 0, scenes: int = 400) -> list[str]:
    """Every prompt and answer text the demo model reads or writes (for its tokenizer)."""
    from .data.shapes import COLORS, SHAPES, SIZES, VQA_ANSWERS, ShapesWorld
    from .tasks import caption, entailment, grounding, vqa

    world = ShapesWorld(seed=world_seed)
    texts = [caption.PROMPT, *(" " + a for a in VQA_ANSWERS),
             *(" " + a for a in entailment.ANSWERS), *(" " + w for w in (*COLORS, *SHAPES,
                                                                        *SIZES))]
    for split in ("train", "val", "test"):
        for i in range(scenes):
            for r in world.records(split, i, "scene.png"):
                if r["task"] == "caption":
                    texts.append(" " + r["caption"])
                elif r["task"] == "vqa":
                    texts.append(vqa.source_text(r["question"]))
                elif r["task"] == "ground":
                    texts.append(grounding.PROMPT.format(r["text"]))
                elif r["task"] == "entail":
                    texts.append(entailment.PROMPT.format(r["hypothesis"]))
                elif r["task"] == "classify":
                    texts.append(" " + r["label"])
    return texts


def _pick_scene(world_seed: int = 0):
    """The first test scene with three shapes: the demo image."""
    from .data.shapes import ShapesWorld

    world = ShapesWorld(seed=world_seed)
    for i in range(1000):
        scene = world.scene("test", i)
        if len(scene.shapes) == 3:
            return scene
    raise RuntimeError("no three-shape scene in the first 1000 test scenes")


def export_demo(trained: str | os.PathLike[str], out_dir: str | os.PathLike[str] = DEMO_DIR,
                world_seed: int = 0) -> Path:
    """Write a trained model folder as the embedded demo: fp16 weights, a tokenizer reduced
    to the ShapesWorld vocabulary, the VQA answer list, the demo image and its queries."""
    from .convert import convert_checkpoint
    from .data.shapes import VQA_ANSWERS

    texts = demo_texts(world_seed)
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".demo-", dir=out.parent))
    shutil.rmtree(tmp)
    convert_checkpoint(trained, tmp, dtype=torch.float16,
                       tokenizer=lambda full: full.restricted_to(texts),
                       meta_keys=("image_size", "trained_updates", "metrics"),
                       source={"registry_name": DEMO_NAME}, answers=list(VQA_ANSWERS))
    tmp.chmod(0o755)  # mkdtemp made it private
    for f in tmp.iterdir():
        f.chmod(0o644)
    replace_folder(tmp, out)
    scene = _pick_scene(world_seed)
    scene.render().save(out.parent / DEMO_IMAGE.name)
    shape = scene.shapes[0]
    queries = {"question": f"what color is the {shape.kind}?"
               if sum(s.kind == shape.kind for s in scene.shapes) == 1
               else "how many shapes are there?",
               "text": scene.referring()[-1][0], "caption": scene.caption()}
    (out.parent / DEMO_QUERIES.name).write_text(json.dumps(queries, indent=2) + "\n",
                                                encoding="utf-8")
    return out


def draw_box(image_path: str | os.PathLike[str], box: list[float] | None,
             out_path: str | os.PathLike[str], label: str = "", scale: int = 4) -> Path:
    """Save the image enlarged ``scale`` times with ``box`` drawn on it."""
    from PIL import Image, ImageDraw

    from .preprocess import load_image

    img = load_image(image_path)
    img = img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST)
    if box is not None:
        draw = ImageDraw.Draw(img)
        x0, y0, x1, y1 = (v * scale for v in box)
        draw.rectangle([x0, y0, x1, y1], outline=(255, 0, 255), width=max(2, scale))
        if label:
            draw.text((x0 + 3, max(0, y0 - 12)), label, fill=(255, 0, 255))
    out = Path(out_path)
    img.save(out)
    return out


def run_demo(out_image: str | os.PathLike[str] = "demo_out.png", *, image: str | None = None,
             question: str | None = None, text: str | None = None,
             device: str | None = "cpu") -> dict:
    """Caption, VQA and grounding with the embedded model; writes the grounded box image."""
    from .api import load
    from .checkpoints import model_answers

    if not DEMO_DIR.is_dir():
        raise InputError(f"the embedded demo model is missing ({DEMO_DIR}); reinstall the "
                         "package or rebuild it with `make demo-model`")
    queries = json.loads(DEMO_QUERIES.read_text(encoding="utf-8"))
    image = image or str(DEMO_IMAGE)
    question = question or queries["question"]
    text = text or queries["text"]
    with torch.inference_mode():
        ofa = load(DEMO_DIR, device=device)
        cap = ofa.caption(image)
        answer = ofa.vqa(image, question, answers=model_answers(DEMO_DIR))
        ground = ofa.ground(image, text)
    out = draw_box(image, ground["box"], out_image, text)
    return {"image": image, "caption": cap["caption"], "question": question,
            "answer": answer["answer"], "text": text, "box": ground["box"],
            "output_image": str(out)}


if __name__ == "__main__":  # make demo-model: python -m ofa.demo TRAINED_FOLDER
    import sys

    if len(sys.argv) != 2:
        sys.exit("usage: python -m ofa.demo TRAINED_MODEL_FOLDER  (e.g. runs/shapes-demo/best)")
    print(f"exported {export_demo(sys.argv[1])}")
