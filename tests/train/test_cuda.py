"""On a GPU: training, mixed precision, channels-last images. Skipped where CUDA is absent."""

import pytest
import torch

import dltrain

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")


@pytest.mark.parametrize("precision", ["32", "bf16", "16"])
def test_tables_train_on_cuda(workdir, precision):
    result = dltrain.fit("configs/iris.yaml", [f"train.precision={precision}"], device="cuda", progress=False)
    assert result.history[-1]["val_accuracy"] > 0.8
    state = torch.load(result.run_dir / "best.pt", weights_only=True)
    assert all(t.device.type == "cpu" for t in state["model"].values())  # loads anywhere


def test_images_train_channels_last_on_cuda(tmp_path):
    from tests.test_images import make_shapes, yaml_dict

    folder = make_shapes(tmp_path / "shapes", 20)
    config = yaml_dict(folder)
    config["model"]["layers"] = [{"Conv2d": [8, 3]}, {"BatchNorm2d": None}, "ReLU", "Flatten", {"Linear": "auto"}]
    result = dltrain.fit(config, ["train.epochs=2"], device="cuda", out=tmp_path / "run", progress=False)
    assert len(result.history) == 2
    evaluated = dltrain.evaluate(tmp_path / "run", split="val")
    assert evaluated.rows > 0
