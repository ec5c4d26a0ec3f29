import gzip
import struct

import numpy as np
import pytest

from datamodules.shards.format import ShardError
from datamodules.sources.fashion_mnist import CLASSES, DEBIAN_DIR, load_split, locate, read_idx


def test_reads_the_debian_idx_files():
    folder = locate()  # make test installs Debian's dataset-fashion-mnist
    assert folder == DEBIAN_DIR
    images, labels = load_split(folder, "test")
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert np.bincount(labels, minlength=10).tolist() == [1000] * 10
    assert len(CLASSES) == 10


def test_truncated_idx_file_is_reported(tmp_path):
    path = tmp_path / "images-idx3-ubyte.gz"
    with gzip.open(path, "wb") as fh:
        fh.write(struct.pack(">HBBIII", 0, 8, 3, 5, 28, 28) + bytes(28 * 28 * 2))
    with pytest.raises(ShardError, match="truncated"):
        read_idx(path)


def test_missing_files_explain_how_to_get_them(tmp_path):
    with pytest.raises(ShardError, match="apt-get install dataset-fashion-mnist"):
        locate(tmp_path)
