"""ImageNet-style classification folders: ``root/<class folder>/<image files>``.

The label a model must generate is a class *name*, so folder names are mapped through an
optional class-names file:

- text, one class a line: ``n01440764 tench`` or ``n01440764<TAB>tench, Tinca tinca`` (Caffe's
  ``synset_words.txt``, Kaggle's ``LOC_synset_mapping.txt``); blank lines and ``#`` comments
  are skipped;
- JSON: ``{"0": ["n01440764", "tench"], ...}`` (``imagenet_class_index.json``) or
  ``{"n01440764": "tench", ...}``.

The display name is the first comma-separated synonym (``tench`` from ``tench, Tinca tinca``):
the short common name is what a captioning-style model says, and what the OFA ImageNet files
label. A few synsets share a first synonym (``crane`` the bird and the machine); they then
share the name, and a prediction of it counts for both. Without a file the folder name is the
class name, with ``_`` read as a space; folders named by WordNet ids (``n01440764``) then need
a class-names file, since a model cannot generate those.

The candidate names the classifier ranks are every name in the class-names file (in file
order, duplicates once), or every class folder's name.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path

from ...errors import InputError
from .common import require_file

__all__ = ["IMAGE_EXTENSIONS", "class_candidates", "display_name", "read_class_names",
           "read_image_folder"]

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif",
                              ".tiff", ".ppm", ".pgm"})
_WNID = re.compile(r"^n\d{8}$")


def display_name(names: str) -> str:
    """``"tench, Tinca tinca"`` -> ``"tench"`` (the first synonym, spaces tidied)."""
    return " ".join(names.split(",")[0].split())


def _from_json(data: object, p: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    if isinstance(data, dict):
        for key, value in data.items():
            if isinstance(value, list) and len(value) == 2 and all(isinstance(v, str)
                                                                   for v in value):
                folder, name = value  # {"0": ["n01440764", "tench"]}
            elif isinstance(value, str):
                folder, name = key, value  # {"n01440764": "tench"}
            else:
                raise InputError(f"{p}: entry {key!r} must be a name or [folder, name]")
            out[folder] = name
        return out
    raise InputError(f"{p}: a JSON class-names file must be an object")


def read_class_names(path: str | os.PathLike[str]) -> dict[str, str]:
    """``{folder name: display name}`` from a class-names file (see the module docstring),
    in file order."""
    p = require_file(path, "class-names file")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError(f"class-names file {p}: not UTF-8 text") from None
    raw: dict[str, str] = {}
    if text.lstrip().startswith("{"):
        try:
            raw = _from_json(json.loads(text), p)
        except json.JSONDecodeError as e:
            raise InputError(f"class-names file {p}: not valid JSON ({e.msg})") from None
    else:
        for n, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split(None, 1)
            if len(parts) != 2:
                raise InputError(f"{p}:{n}: expected 'folder name' (e.g. 'n01440764 tench'), "
                                 f"got {line!r}")
            if parts[0] in raw:
                raise InputError(f"{p}:{n}: class {parts[0]!r} is listed twice")
            raw[parts[0]] = parts[1]
    names = {}
    for folder, name in raw.items():
        shown = display_name(name)
        if not shown:
            raise InputError(f"{p}: class {folder!r} has an empty name")
        names[folder] = shown
    if not names:
        raise InputError(f"class-names file {p} lists no classes")
    return names


def class_candidates(class_names: dict[str, str] | None,
                     folders: Sequence[str] = ()) -> list[str]:
    """The names a classifier ranks: the class-names file's (file order, each once), or the
    folders' names when there is no file."""
    if class_names:
        return list(dict.fromkeys(class_names.values()))
    return list(dict.fromkeys(_folder_label(f) for f in folders))


def _folder_label(folder: str) -> str:
    return " ".join(folder.replace("_", " ").split())


def read_image_folder(root: str | os.PathLike[str], split: str | None = None,
                      class_names: str | os.PathLike[str] | None = None
                      ) -> tuple[list[dict], list[str]]:
    """Classification records of an image folder, and the candidate class names.

    ``root`` holds one folder per class; with ``split`` (or, without it, when ``root/val``
    exists) the class folders are in ``root/<split>``. Images are found recursively in each
    class folder, sorted. Records: ``{"task": "classify", "id": "<class folder>/<file>",
    "image": absolute path, "label": class name}``.
    """
    base = Path(root)
    if not base.is_dir():
        raise InputError(f"image folder not found: {base}")
    if split is not None:
        folder = base / split
        if not folder.is_dir():
            subs = sorted(d.name for d in base.iterdir() if d.is_dir())
            raise InputError(f"{base}: no {split}/ folder for split {split!r} (found "
                             f"{', '.join(subs[:10]) or 'no folders'})")
    else:
        folder = base / "val" if (base / "val").is_dir() else base
    classes = sorted(d.name for d in folder.iterdir() if d.is_dir() and
                     not d.name.startswith("."))
    if not classes:
        raise InputError(f"{folder}: no class folders; expected <root>/<class>/<images>")
    names = read_class_names(class_names) if class_names is not None else None
    if names is not None:
        unknown = [c for c in classes if c not in names]
        if unknown:
            raise InputError(f"{class_names} has no name for class folder(s) "
                             f"{', '.join(unknown[:5])}{' ...' if len(unknown) > 5 else ''}")
    elif any(_WNID.match(c) for c in classes):
        raise InputError(f"{folder}: class folders are WordNet ids (e.g. {classes[0]}); pass a "
                         "class-names file (--class-names, e.g. 'n01440764 tench' lines) so "
                         "labels are names a model can generate")
    records = []
    resolved = folder.resolve()
    for c in classes:
        label = names[c] if names is not None else _folder_label(c)
        files = sorted(p for p in (resolved / c).rglob("*")
                       if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
        for f in files:
            records.append({"task": "classify", "id": f.relative_to(resolved).as_posix(),
                            "image": str(f), "label": label})
    if not records:
        raise InputError(f"{folder}: the class folders hold no image files "
                         f"({', '.join(sorted(IMAGE_EXTENSIONS))})")
    return records, class_candidates(names, classes)
