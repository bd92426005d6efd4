"""Small text files a user names (brand kits, campaign CSVs, style lists), read with one sentence
for each way that can fail, naming the file by its base name only (`postprocess.file_name`)."""
from __future__ import annotations

import os
from pathlib import Path

from pipeline.postprocess import file_name


def read_small_text(path: str | os.PathLike, what: str, limit: int, *, over: str, not_utf8: str = "",
                    encoding: str = "utf-8") -> str:
    """The text of the file at `path`, at most `limit` bytes; ValueError in one sentence naming it as
    `what` 'name': not found, unreadable, not UTF-8 (`not_utf8` follows as a hint), or larger than
    `limit` (`over`, a phrase formatted with `size` and `limit`: "is over {limit} bytes")."""
    name = file_name(path)
    try:
        size = Path(path).stat().st_size
        if size > limit:
            raise ValueError(f"{what} {name!r} {over.format(size=size, limit=limit)}")
        return Path(path).read_text(encoding=encoding)
    except FileNotFoundError:
        raise ValueError(f"{what} {name!r}: file not found") from None
    except UnicodeDecodeError:
        raise ValueError(f"{what} {name!r} is not UTF-8 text{not_utf8}") from None
    except OSError as error:
        raise ValueError(f"{what} {name!r}: cannot read it: {error.strerror or type(error).__name__}") from None
