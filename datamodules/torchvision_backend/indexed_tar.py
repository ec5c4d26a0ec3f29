"""A shard's samples read through its DALI index file (``classreg shard`` writes one per shard): each member is
read where the index says it lies, instead of walking every tar header in Python, which costs the torchvision
loader about 0.2 ms an image (docs/development.md, "Input pipeline").

An index comes from the shard folder, so nothing in it is trusted: every member it names must sit behind a tar
header (checksum verified) with that name and size, in the tar itself; any mismatch is a SampleError naming
the shard and the fix. Samples come out as webdataset's ``tarfile_samples`` gives them (``__key__``,
``__url__`` and one entry per extension).
"""

from __future__ import annotations

import os
import tarfile
from pathlib import Path
from typing import Iterator

from webdataset.tariterators import base_plus_ext

from datamodules.torchvision_backend.decode import SampleError

Member = tuple[str, int, int, str]  # extension, data offset, size, name


def _refuse(url: str, index: str, problem: str) -> SampleError:
    return SampleError(
        f"index file '{index}' of shard '{url}' {problem}: it was changed or not written by `classreg shard`; "
        f"re-create it with `wds2idx {url} {index}`, or the shards with `classreg shard`"
    )


def read_index(url: str, index: str, samples: int) -> list[list[Member]]:
    """The members of each sample, as the index lists them; SampleError unless it lists ``samples`` samples."""
    try:
        lines = Path(index).read_text().splitlines()
        parsed = []
        for line in lines[1:]:
            fields = line.split()
            if not fields:
                continue
            if len(fields) % 4:
                raise ValueError(line[:80])
            parsed.append(
                [(fields[i], int(fields[i + 1]), int(fields[i + 2]), fields[i + 3]) for i in range(0, len(fields), 4)]
            )
        declared = int(lines[0].split()[1])
    except (OSError, UnicodeDecodeError, ValueError, IndexError) as e:
        raise _refuse(url, index, f"cannot be read ({type(e).__name__}: {e})") from None
    if declared != samples or len(parsed) != samples:
        raise _refuse(url, index, f"lists {len(parsed)} samples where manifest.json records {samples}")
    return parsed


def indexed_samples(url: str, index: str, samples: int, lo: int, hi: int) -> Iterator[dict]:
    """Samples ``lo`` to ``hi`` (exclusive) of the shard, read through its index."""
    members = read_index(url, index, samples)[lo:hi]
    with open(url, "rb") as fh:
        fd, length = fh.fileno(), os.fstat(fh.fileno()).st_size
        for sample in members:
            out = {"__url__": url}
            for ext, offset, size, name in sample:
                if not tarfile.BLOCKSIZE <= offset <= length - size:
                    raise _refuse(url, index, f"places '{name}' outside the tar ({length} bytes)")
                try:
                    header = tarfile.TarInfo.frombuf(
                        os.pread(fd, tarfile.BLOCKSIZE, offset - tarfile.BLOCKSIZE), tarfile.ENCODING, "surrogateescape"
                    )
                except tarfile.HeaderError as e:
                    raise _refuse(url, index, f"places '{name}' where the tar has no member header ({e})") from None
                if header.name != name or header.size != size or not header.isreg():
                    raise _refuse(url, index, f"does not match the tar at '{name}' (the tar has '{header.name}' there)")
                key, suffix = base_plus_ext(name)
                if suffix != ext or out.setdefault("__key__", key) != key:
                    raise _refuse(url, index, f"lists '{name}' as the {ext} of sample '{out['__key__']}'")
                out[ext] = os.pread(fd, size, offset)
            yield out
