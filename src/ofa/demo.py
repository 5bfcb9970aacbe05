"""The embedded demo model: a small OFA trained from scratch on ShapesWorld, shipped with the
package (fp16 safetensors) so that every task runs offline without an official checkpoint.

``ofa demo`` captions the demo image, answers a question about it, grounds an object, and
draws a scene from text. ``make demo-model`` rebuilds the model: it writes ShapesWorld, trains
``configs/shapes-demo.yaml`` and calls :func:`export_demo`.

Text-to-image has two more parts beside the weights: ``vqgan/``, the image tokenizer (``make
shapes-vqgan``), and ``draw/``, a second small model that only draws (``make draw-model``:
``configs/shapes-draw.yaml``, :func:`export_drawing`). The demo model ranks its drawings by its
own log p(caption | image).

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
from .imagegen.imagine import DRAWER_DIR

DEMO_NAME = "shapes-demo"
ASSETS = Path(__file__).resolve().parent / "assets"
DEMO_DIR = ASSETS / DEMO_NAME
DEMO_IMAGE = ASSETS / "demo.png"
DEMO_QUERIES = ASSETS / "demo.json"
VQGAN_DIR = "vqgan"  # beside the weights, where text-to-image looks for its image tokenizer
DRAW_SAMPLES = 24  # images the demo draws of its text, as the official evaluation samples


def demo_texts(world_seed: int = 0, scenes: int = 400) -> list[str]:
    """Every prompt and answer text the demo model reads or writes (for its tokenizer)."""
    from .data.shapes import COLORS, SHAPES, SIZES, VQA_ANSWERS, ShapesWorld
    from .tasks import caption, entailment, grounding, imagine, vqa

    world = ShapesWorld(seed=world_seed)
    texts = [caption.PROMPT, *(" " + a for a in VQA_ANSWERS),
             *(" " + a for a in entailment.ANSWERS), *(" " + w for w in (*COLORS, *SHAPES,
                                                                        *SIZES))]
    for split in ("train", "val", "test"):
        for i in range(scenes):
            for r in world.records(split, i, "scene.png"):
                if r["task"] == "caption":
                    texts.extend((" " + r["caption"], imagine.PROMPT.format(r["caption"])))
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
    to the ShapesWorld vocabulary, the VQA answer list, the demo image and its queries. The
    text-to-image parts already in the folder (``vqgan/`` and ``draw/``, built by ``make
    shapes-vqgan`` and ``make draw-model``) stay."""
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
    _publish(tmp, out, keep=(VQGAN_DIR, DRAWER_DIR))  # trained by their own targets
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


def export_drawing(trained: str | os.PathLike[str],
                   out_dir: str | os.PathLike[str] = DEMO_DIR / DRAWER_DIR,
                   world_seed: int = 0) -> Path:
    """Write a trained text-to-image model as the demo's drawing model (``draw/`` beside
    the demo model, which ranks its drawings): fp16 weights, and of the token embedding only
    the rows it reads or writes (the specials, the tokens of the ShapesWorld prompts, the
    codes of the demo VQGAN): 0.15 MB of embedding instead of 15 MB. It uses the demo's
    tokenizer."""
    from .checkpoints import model_from_checkpoint, read_checkpoint, save_native
    from .convert import find_tokenizer
    from .data.shapes import ShapesWorld
    from .imagegen.vqgan_io import load_vqgan
    from .tasks.imagine import ImagineTask
    from .tokenizer import CODE_OFFSET
    from .train.loss import NUM_SPECIAL_IDS

    ckpt = read_checkpoint(trained)
    if ckpt.format != "native":
        raise InputError(f"{trained}: expected a folder trained here (ofa train)")
    tokenizer = find_tokenizer(None, ckpt.tokenizer_dir)
    codes = load_vqgan(Path(out_dir).parent / VQGAN_DIR).config.n_embed
    rows = set(range(NUM_SPECIAL_IDS)) | set(range(CODE_OFFSET, CODE_OFFSET + codes))
    task, world = ImagineTask(), ShapesWorld(seed=world_seed)
    for split in ("train", "val", "test"):  # what the drawing model reads: every prompt word
        for i in range(400):
            rows.update(task.prepare(tokenizer, "", world.scene(split, i).caption()).source)
    source = {k: ckpt.meta[k] for k in ("trained_updates",) if k in ckpt.meta}
    model = model_from_checkpoint(ckpt, dtype=torch.float16)
    out = Path(out_dir)
    tmp = Path(tempfile.mkdtemp(prefix=".draw-", dir=out.parent))
    shutil.rmtree(tmp)
    save_native(model, tmp, source={**source, "task": "imagine"}, embedding_rows=sorted(rows))
    _publish(tmp, out)
    return out


def _publish(tmp: Path, out: Path, keep: tuple[str, ...] = ()) -> None:
    """Replace ``out`` by the folder written in ``tmp``, readable by all, carrying over
    the ``keep`` subfolders of the old one."""
    tmp.chmod(0o755)  # mkdtemp made it private
    for f in tmp.iterdir():
        f.chmod(0o644)
    for part in keep:
        if (out / part).is_dir():
            shutil.copytree(out / part, tmp / part)
    replace_folder(tmp, out)


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
             draw: str | None = None,
             drawn_image: str | os.PathLike[str] | None = "demo_imagine.png",
             device: str | None = "cpu") -> dict:
    """Caption, VQA and grounding with the embedded model; writes the grounded box image.
    With ``drawn_image`` it also draws ``draw`` (default: the demo scene's caption), keeps the
    image its own caption likelihood ranks first, saves it enlarged and reads it back with the
    ShapesWorld checker (``checker``: what it saw, and whether colours, sizes and positions
    match the text)."""
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
        drawn = None
        if drawn_image is not None:
            draw = draw or queries["caption"]
            drawn = ofa.imagine(draw, samples=DRAW_SAMPLES, top=1, seed=0, rank="caption")
    out = draw_box(image, ground["box"], out_image, text)
    result = {"image": image, "caption": cap["caption"], "question": question,
              "answer": answer["answer"], "text": text, "box": ground["box"],
              "output_image": str(out)}
    if drawn is not None:
        from PIL import Image

        from .data.shapes_check import check

        picture = drawn.images[0]
        picture.resize((picture.width * 4, picture.height * 4),
                       Image.Resampling.NEAREST).save(drawn_image)
        result.update(draw=draw, drawn_image=str(drawn_image), checker=None)
        try:  # the checker reads ShapesWorld captions only; the drawing is kept either way
            reading = check(picture, draw)
        except InputError as e:
            result["checker_error"] = str(e)
        else:
            result["checker"] = {"seen": reading.describe(), "colors": reading.colors,
                                 "sizes": reading.sizes, "positions": reading.positions}
    return result


if __name__ == "__main__":  # make demo-model / draw-model: python -m ofa.demo [--draw] FOLDER
    import sys

    args = sys.argv[1:]
    drawing = args[:1] == ["--draw"]
    if len(args) != 1 + drawing:
        sys.exit("usage: python -m ofa.demo [--draw] TRAINED_MODEL_FOLDER  (e.g. "
                 "runs/shapes-demo/best; --draw: runs/shapes-draw/final, the drawing model)")
    print(f"exported {(export_drawing if drawing else export_demo)(args[-1])}")
