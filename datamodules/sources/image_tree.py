"""An image-folder tree as shard-writer input: ``SRC/<split>/<class>/<image>`` (torchvision's ImageFolder
layout), with ImageNet's flat ``val/`` folder handled by datamodules/sources/imagenet.py.

What the scan leaves out, and says so (docs/trust.md): hidden files and folders (a leading dot: ``.ipynb_checkpoints``,
``._x.jpg``) are skipped and counted; files whose names are not UTF-8, broken symbolic links and symbolic links
to files outside SRC are skipped and listed; a class folder that cannot be named (not UTF-8, control
characters), cannot be read, or is a symbolic link leaving SRC is refused. ``follow_symlinks`` reads links that
leave SRC (a subset of a dataset built from links).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path

from datamodules.shards.format import IMAGE_SUFFIXES, MAX_IMAGE_PIXELS, SPLIT_NAMES, ShardError, printable
from datamodules.shards.images import open_image
from datamodules.shards.writer import Item, write_dataset
from datamodules.sources.imagenet import flat_val_items, readable_class_names


def check_image(data: bytes, verify: bool, max_pixels: int = MAX_IMAGE_PIXELS) -> tuple[int, int]:
    """(width, height). ``verify``: decode the whole image. Otherwise parse the header and check that a JPEG is
    complete."""
    with open_image(data, max_pixels) as im:
        if verify:
            im.load()  # full decode: truncated or garbled files raise here
        elif im.format == "JPEG" and not data.rstrip(b"\0").endswith(b"\xff\xd9"):
            raise OSError("JPEG is truncated: no end-of-image marker (--verify decodes every image instead)")
        return im.size


def encode_image_file(
    path: str, verify: bool = False, max_pixels: int = MAX_IMAGE_PIXELS
) -> tuple[str, bytes, tuple[int, int]]:
    """Read an image file unchanged; raise if it is not a complete image or has more than ``max_pixels``."""
    ext = IMAGE_SUFFIXES[Path(path).suffix.lower()]
    data = Path(path).read_bytes()
    return ext, data, check_image(data, verify, max_pixels)


def sample_key(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", text)  # no dots: webdataset and DALI split keys at the first dot


def is_utf8(name: str) -> bool:
    try:
        name.encode("utf-8")  # a name that is not UTF-8 arrives with surrogate escapes, which do not encode
    except UnicodeEncodeError:
        return False
    return True


@dataclass
class Listing:
    """What one folder of the tree holds for the scan, and what it leaves out."""

    files: list[Path] = field(default_factory=list)
    folders: list[Path] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)  # {"source", "error"}, as in the manifest
    hidden: int = 0


class TreeReader:
    """Lists the folders of SRC, applying the rules of the module docstring."""

    def __init__(self, src: Path, follow_symlinks: bool = False):
        self.src, self.follow_symlinks = src, follow_symlinks
        self.real_src = src.resolve()

    def outside(self, path: Path) -> bool:
        return not self.follow_symlinks and not path.resolve().is_relative_to(self.real_src)

    def list(self, folder: Path) -> Listing:
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as e:
            raise ShardError(
                f"cannot read the folder '{printable(folder)}': {e.strerror}. Make it readable (chmod u+rx) or "
                "move it out of SRC"
            ) from None
        listing = Listing()
        for entry in entries:
            path = Path(entry.path)
            if entry.name.startswith("."):
                listing.hidden += 1
            elif entry.is_symlink() and not path.exists():
                listing.skipped.append({"source": printable(path), "error": "a broken symbolic link"})
            elif entry.is_dir():
                listing.folders.append(path)
            elif path.suffix.lower() not in IMAGE_SUFFIXES or not entry.is_file():
                continue  # not an image: ignored, as by torchvision's ImageFolder
            elif not is_utf8(entry.name):
                listing.skipped.append({"source": printable(path), "error": "the file name is not valid UTF-8"})
            elif entry.is_symlink() and self.outside(path):
                error = f"a symbolic link to '{printable(path.resolve())}', outside SRC (--follow-symlinks reads it)"
                listing.skipped.append({"source": printable(path), "error": error})
            else:
                listing.files.append(path)
        return listing

    def class_folder(self, folder: Path) -> Path:
        """``folder`` if it can be a class; ShardError naming the fix otherwise."""
        if not is_utf8(folder.name) or not folder.name.isprintable():
            raise ShardError(
                f"class folder '{printable(folder)}': its name is not valid UTF-8 or holds control characters, "
                "so it cannot name a class; rename it (e.g. with `convmv`)"
            )
        if self.outside(folder):
            raise ShardError(
                f"class folder '{printable(folder)}' is a symbolic link to '{printable(folder.resolve())}', outside "
                "SRC: pass --follow-symlinks to read it, or copy it into SRC"
            )
        return folder


def key_suffix(source: Path, src: Path) -> str:
    return hashlib.sha256(str(source.relative_to(src)).encode()).hexdigest()[:8]


def unique_keys(items: list[Item], src: Path) -> tuple[list[Item], int]:
    """Items whose keys collide (``a.b.png`` and ``a_b.png`` are both ``..._a_b``) get ``-`` and 8 hex digits of
    a hash of their path in SRC appended; returns the items and how many keys were changed."""
    by_key: dict[str, list[int]] = defaultdict(list)
    for i, item in enumerate(items):
        by_key[item.key].append(i)
    changed = [i for group in by_key.values() if len(group) > 1 for i in group]
    items = list(items)
    for i in changed:
        items[i] = replace(items[i], key=f"{items[i].key}-{key_suffix(Path(items[i].source), src)}")
    return items, len(changed)


@dataclass
class TreeScan:
    classes: list[str]
    items: dict[str, list[Item]]
    notes: dict[str, dict]  # per split: skipped entries and counts, for the manifest


def scan_image_tree(src: str | os.PathLike, follow_symlinks: bool = False) -> TreeScan:
    """``SRC/<split>/<class>/<image>`` (or ImageNet's flat val/) -> class names (sorted, from train), items per
    split, and per split what was left out: skipped files, hidden entries, images of classes not in train/."""
    src = Path(src)
    if not src.is_dir():
        raise ShardError(f"source folder '{printable(src)}' does not exist")
    if not is_utf8(str(src.resolve())):
        raise ShardError(f"source folder '{printable(src)}': its path is not valid UTF-8; rename it or link to it")
    reader = TreeReader(src, follow_symlinks)
    top = reader.list(src)
    splits = [s for s in SPLIT_NAMES if any(d.name == s for d in top.folders)]
    if "train" not in splits:
        raise ShardError(
            f"'{printable(src)}' has no train/ folder; expected SRC/train/<class>/*.jpg and optionally "
            "SRC/val|test/<class>/*.jpg"
        )
    for split in splits:
        if reader.outside(src / split):
            raise ShardError(
                f"'{printable(src / split)}' is a symbolic link to '{printable((src / split).resolve())}', "
                "outside SRC: pass --follow-symlinks to read it"
            )
    listings = {split: reader.list(src / split) for split in splits}
    classes = [reader.class_folder(d).name for d in listings["train"].folders]
    if not classes:
        raise ShardError(f"'{printable(src / 'train')}' has no class folders")
    index = {name: i for i, name in enumerate(classes)}
    items: dict[str, list[Item]] = {}
    notes: dict[str, dict] = {}
    for split in splits:
        listing = listings[split]
        note = notes[split] = {"skipped": list(listing.skipped), "hidden_skipped": listing.hidden}
        found = []
        if split != "train" and not listing.folders and listing.files:
            found, excluded = flat_val_items(src / split, listing.files, index, sample_key)
            note["excluded_not_in_train_classes"] = len(excluded)
        for class_dir in listing.folders:
            reader.class_folder(class_dir)
            if class_dir.name not in index:
                raise ShardError(
                    f"class folder '{printable(class_dir)}' is not among the train classes; every split must use "
                    "the train class names"
                )
            inside = reader.list(class_dir)
            note["skipped"] += inside.skipped
            note["hidden_skipped"] += inside.hidden
            for f in inside.files:
                found.append(Item(sample_key(f"{class_dir.name}_{f.stem}"), index[class_dir.name], str(f), str(f)))
        items[split], note["keys_made_unique"] = unique_keys(found, src)
    return TreeScan(classes, items, notes)


def shard_image_tree(src, out, follow_symlinks: bool = False, **kwargs) -> dict:
    scan = scan_image_tree(src, follow_symlinks)
    return write_dataset(
        out,
        scan.classes,
        scan.items,
        encode_image_file,
        source=str(Path(src).resolve()),
        scan=scan.notes,
        readable_names=readable_class_names(scan.classes),
        source_settings={"follow_symlinks": follow_symlinks},
        **kwargs,
    )
