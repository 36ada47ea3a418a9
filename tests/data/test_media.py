import numpy as np
import pytest
import torch

from dltrain.data.media import Normalize, channel_statistics, decode_files
from dltrain.errors import DataError


def test_normalize_never_changes_the_stored_data():
    stored = torch.rand(4, 1, 5, 5)
    before = stored.clone()
    normalize = Normalize([0.5], [0.25], [], dims=4, scale=1.0)
    first = normalize(stored[:2])  # a view, as validation batches are
    second = normalize(stored[:2])
    assert torch.equal(stored, before)
    assert torch.equal(first, second)
    assert torch.allclose(first, (before[:2] - 0.5) / 0.25)


def test_channel_statistics_per_channel():
    values = torch.zeros(10, 2, 3, 3, dtype=torch.uint8)
    values[:, 0] = 255
    values[5:, 1] = 255
    mean, std = channel_statistics(values)
    assert mean == [1.0, 0.5] and std[1] == 0.5 and std[0] == 1.0  # a flat channel gets std 1


def _square(path: str, options: dict):
    if path.endswith("bad"):
        return "cannot read"
    return np.full(options["shape"], int(path[-1]), dtype=np.int64)


def test_decode_files_keeps_order_and_reports_failures(tmp_path):
    paths = [str(tmp_path / f"f{i}") for i in range(5)] + [str(tmp_path / "bad")]
    for p in paths:
        open(p, "w").close()
    decoded = decode_files("test", paths, _square, {"shape": [2]}, (2,), np.int64, use_cache=True)
    assert decoded.values.tolist() == [[0, 0], [1, 1], [2, 2], [3, 3], [4, 4]]
    assert decoded.kept.tolist() == [True] * 5 + [False]
    assert decoded.failed == [(paths[-1], "cannot read")]
    again = decode_files("test", paths, _square, {"shape": [2]}, (2,), np.int64, use_cache=True)
    assert torch.equal(again.values, decoded.values) and again.failed == decoded.failed


def _png(path, value=0):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", (6, 6), value).save(path)


def test_a_folder_is_listed_once_and_again_only_when_it_changed(tmp_path, monkeypatch):
    import os
    import time

    from dltrain.data import media
    from dltrain.data.images import image_folder_table

    for label in ("a", "b"):
        for i in range(3):
            _png(tmp_path / "photos" / label / f"{i}.png")
    _png(tmp_path / "photos" / "a" / ".hidden.png")
    _png(tmp_path / "photos" / "b" / "deeper" / "9.png")
    os.symlink(tmp_path / "photos", tmp_path / "photos" / "b" / "deeper" / "up")  # a link back up: not walked into
    scans = []
    real = media.os.scandir
    monkeypatch.setattr(media.os, "scandir", lambda path: scans.append(path) or real(path))
    first = image_folder_table(tmp_path / "photos")
    assert first["label"].tolist() == ["a"] * 3 + ["b"] * 4 and all(os.path.isabs(p) for p in first["path"])
    scans.clear()
    assert image_folder_table(tmp_path / "photos").equals(first)
    assert scans  # folders changed a moment ago are listed again: a change within their time's resolution would not show
    for folder in ("photos", "photos/a", "photos/b", "photos/b/deeper"):
        os.utime(tmp_path / folder, (time.time() - 10, time.time() - 10))
    image_folder_table(tmp_path / "photos")
    scans.clear()
    assert image_folder_table(tmp_path / "photos").equals(first)
    assert scans == []  # checking the source and reading it share one listing
    _png(tmp_path / "photos" / "b" / "deeper" / "10.png")  # a new file: its folder's time changed
    assert len(image_folder_table(tmp_path / "photos")) == 8 and scans


def _refuse(path, options):
    raise AssertionError("a header was read again")


def test_image_headers_come_from_the_cache_on_a_second_fit(tmp_path, monkeypatch):
    import pandas as pd

    from dltrain.data import images

    monkeypatch.setenv("DLTRAIN_CACHE", str(tmp_path / "cache"))
    paths = []
    for i in range(300):  # enough for worker processes
        _png(tmp_path / "p" / f"{i}.png", i % 200)
        paths.append(str(tmp_path / "p" / f"{i}.png"))
    (tmp_path / "p" / "299.png").write_bytes(b"not a png")
    series = pd.Series(paths)
    first = images.ImageEncoder.fit("path", series, {}, "skip")
    assert list((tmp_path / "cache" / "probes").iterdir())

    monkeypatch.setattr(images, "probe_image", _refuse)
    again = images.ImageEncoder.fit("path", series, {}, "skip")
    assert (again.size, again.channels) == (first.size, first.channels) == ((6, 6), 1)
    with pytest.raises(DataError, match="299.png"):  # the unreadable file is remembered too
        images.ImageEncoder.fit("path", series, {}, "raise")
    monkeypatch.setenv("DLTRAIN_CACHE", str(tmp_path / "other"))
    with pytest.raises(AssertionError):  # data.cache: false reads the headers, and keeps nothing
        images.ImageEncoder.fit("path", series, {}, "skip", use_cache=False)
    assert not (tmp_path / "other").exists()
