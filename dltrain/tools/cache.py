"""`dltrain cache`: what dltrain keeps in its cache folder (decoded images, audio and video, file
headers, fetched urls, Hugging Face datasets), how much of the disk it takes, and clearing it.

Everything there can be made again: a cleared cache is decoded or fetched anew by the next run
that needs it. Nothing here imports torch.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from dltrain.errors import UsageError


def cache_root() -> Path:
    """The cache folder: DLTRAIN_CACHE, else ~/.cache/dltrain (as dltrain.data.media.cache_folder
    finds it; that module imports torch, which listing the cache does not need)."""
    return Path(os.environ.get("DLTRAIN_CACHE") or Path.home() / ".cache" / "dltrain")


@dataclass(frozen=True)
class Entry:
    name: str
    bytes: int
    files: int


@dataclass(frozen=True)
class CacheListing:
    folder: Path
    exists: bool
    entries: list[Entry]

    @property
    def bytes(self) -> int:
        return sum(e.bytes for e in self.entries)

    @property
    def files(self) -> int:
        return sum(e.files for e in self.entries)

    def as_dict(self) -> dict:
        return {
            "folder": str(self.folder),
            "exists": self.exists,
            "entries": [{"name": e.name, "bytes": e.bytes, "files": e.files} for e in self.entries],
            "bytes": self.bytes,
            "files": self.files,
        }


def _measure(path: Path) -> tuple[int, int]:
    """(bytes, files) under `path`, links not followed; what cannot be read counts as nothing."""
    if path.is_symlink() or not path.is_dir():
        try:
            return path.lstat().st_size, 1
        except OSError:
            return 0, 0
    size = count = 0
    for folder, _, names in os.walk(path, onerror=lambda error: None):
        for name in names:
            try:
                size += os.lstat(os.path.join(folder, name)).st_size
                count += 1
            except OSError:
                pass
    return size, count


def list_cache(folder: Path | None = None) -> CacheListing:
    folder = cache_root() if folder is None else Path(folder)
    if not folder.is_dir():
        return CacheListing(folder, False, [])
    entries = [Entry(child.name, *_measure(child)) for child in sorted(folder.iterdir(), key=lambda p: p.name)]
    return CacheListing(folder, True, entries)


def check_clearable(folder: Path) -> None:
    """A DLTRAIN_CACHE set by mistake to the home folder, /, or a folder holding the current one is
    not cleared: its contents are not dltrain's to remove."""
    resolved = folder.resolve()
    for precious in (Path.home(), Path.cwd(), Path("/")):
        try:
            precious = precious.resolve()
        except OSError:
            continue
        if resolved == precious or resolved in precious.parents:
            raise UsageError(
                f"the cache folder {folder} is (or holds) {precious}, not a folder of dltrain's own: "
                "nothing was removed; set DLTRAIN_CACHE to the folder dltrain caches in"
            )


def clear_cache(folder: Path | None = None) -> CacheListing:
    """Remove everything in the cache folder (kept itself); returns what was there."""
    listing = list_cache(folder)
    if not listing.exists:
        return listing
    check_clearable(listing.folder)
    for child in listing.folder.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()
    return listing


def human(size: int) -> str:
    """1536 -> '1.5 KiB'."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"  # not reached
