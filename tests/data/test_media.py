import numpy as np
import torch

from dltrain.data.media import Normalize, channel_statistics, decode_files


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
