"""Opening images with a pixel limit checked before any pixel is decoded: the writer and the torchvision loader
use it (the DALI loader does the same inside its pipeline, datamodules/dali_backend/pipeline.py)."""

from __future__ import annotations

import io
import warnings

from PIL import Image

from datamodules.shards.format import check_image_size


def open_image(data: bytes, max_pixels: int, what: str = "the image") -> Image.Image:
    """The image in ``data`` with only its header parsed; ImageTooLargeError above ``max_pixels``.

    Pillow's own check only warns up to twice its ``Image.MAX_IMAGE_PIXELS``; the limit here is an error. A limit
    raised above Pillow's refusal threshold raises Pillow's threshold with it (in this process)."""
    if Image.MAX_IMAGE_PIXELS is not None and max_pixels > 2 * Image.MAX_IMAGE_PIXELS:
        Image.MAX_IMAGE_PIXELS = max_pixels
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # refused (or accepted) just below
        im = Image.open(io.BytesIO(data))
    try:
        check_image_size(*im.size, max_pixels, what)
    except BaseException:
        im.close()
        raise
    return im
