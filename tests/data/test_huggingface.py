"""Hugging Face datasets as a source: saved datasets and folders of Parquet files built here, never the hub."""

import json
import sys

import numpy as np
import pandas as pd
import pytest

import dltrain
from tests.conftest import ROOT, write

datasets = pytest.importorskip("datasets")
from datasets import ClassLabel, Dataset, DatasetDict, Features, Image, Sequence, Value  # noqa: E402

SPECIES = ["setosa", "versicolor", "virginica"]


@pytest.fixture(autouse=True)
def _offline(tmp_path, monkeypatch):
    """No hub, and the Hugging Face cache of load_dataset in the test's own folder."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True, raising=False)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf", raising=False)


def iris_dataset() -> Dataset:
    frame = pd.read_csv(ROOT / "data" / "iris.csv")
    features = Features({**{c: Value("float32") for c in frame.columns[:4]}, "species": ClassLabel(names=SPECIES)})
    return Dataset.from_pandas(frame.assign(species=frame["species"].map(SPECIES.index)), features=features, preserve_index=False)


def config(source, tmp_path, target="species", layers=None, epochs=12, **data) -> dict:
    return {
        "name": "hf",
        "seed": 0,
        "data": {"source": source, "target": target, "split": {"train": 0.7, "val": 0.15, "test": 0.15}, "batch_size": 16, **data},
        "model": {"layers": layers or [{"Linear": 16}, "ReLU", {"Linear": "auto"}]},
        "loss": "CrossEntropyLoss",
        "optimizer": {"type": "Adam", "lr": 0.01},
        "train": {"epochs": epochs, "out_dir": str(tmp_path / "runs")},
    }


def test_a_saved_dataset_trains_with_the_class_label_names(tmp_path):
    iris_dataset().save_to_disk(tmp_path / "iris")
    run = tmp_path / "run"
    dltrain.fit(config({"type": "huggingface", "path": str(tmp_path / "iris")}, tmp_path), out=run, progress=False)
    info = json.loads((run / "data.json").read_text())
    assert info["source"] == {"type": "huggingface", "path": str(tmp_path / "iris"), "split": "train"}
    evaluated = dltrain.evaluate(run)  # reads the split again from the recorded source
    assert evaluated.metrics["accuracy"] >= 0.8 and not evaluated.data_changed
    assert evaluated.confusion["labels"] == SPECIES
    frame = pd.read_csv(ROOT / "data" / "iris.csv")
    predicted = dltrain.predict(run, frame.drop(columns="species"))
    assert list(predicted.columns) == ["row", "prediction", *(f"prob_{s}" for s in SPECIES)]
    assert set(predicted["prediction"]) <= set(SPECIES)
    assert (predicted["prediction"] == frame["species"]).mean() >= 0.8


def test_a_dataset_dict_reads_the_split_asked_for_and_names_the_splits_there_are(tmp_path, cli, monkeypatch):
    iris = iris_dataset().shuffle(seed=0)
    DatasetDict(train=iris.select(range(100)), test=iris.select(range(100, 150))).save_to_disk(tmp_path / "dd")
    run = tmp_path / "run"
    source = {"type": "huggingface", "path": "dd", "split": "test"}
    monkeypatch.chdir(tmp_path)  # a relative folder: made absolute, as data.json records it
    dltrain.fit(config(source, tmp_path, epochs=2), out=run, progress=False)
    info = json.loads((run / "data.json").read_text())
    assert info["source"] == {"type": "huggingface", "path": str(tmp_path / "dd"), "split": "test"}
    assert info["table_rows"] == 50
    assert dltrain.evaluate(run).rows == len(info["indices"]["test"])
    bad = write(tmp_path / "bad.yaml", json.dumps(config({**source, "split": "validation"}, tmp_path)))
    result = cli("fit", bad)
    assert result.code == 2, result.output
    assert "no split 'validation'" in result.stderr and "train, test" in result.stderr
    assert "Traceback" not in result.output


def test_images_become_files_in_the_cache_and_train_a_cnn(tmp_path):
    from PIL import Image as PILImage

    colors = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220)}
    rng = np.random.default_rng(0)
    images, labels = [], []
    for index, rgb in enumerate(colors.values()):
        for _ in range(20):
            pixels = np.clip(np.array(rgb) + rng.normal(0, 20, (16, 16, 3)), 0, 255).astype(np.uint8)
            images.append(PILImage.fromarray(pixels))
            labels.append(index)
    features = Features({"image": Image(), "label": ClassLabel(names=list(colors))})
    shapes = Dataset.from_dict({"image": images, "label": labels}, features=features)
    shapes.save_to_disk(tmp_path / "colors")
    run = tmp_path / "run"
    layers = [{"Conv2d": [4, 3]}, "ReLU", {"AdaptiveAvgPool2d": {"output_size": [1, 1]}}, "Flatten", {"Linear": "auto"}]
    dltrain.fit(config({"type": "huggingface", "path": str(tmp_path / "colors")}, tmp_path, target="label", layers=layers, epochs=15, batch_size=8), out=run, progress=False)
    written = list((tmp_path / "cache" / "huggingface").glob("*/image/*.png"))
    assert len(written) == 60  # each image once, under the dataset's fingerprint
    assert dltrain.evaluate(run, split="train").metrics["accuracy"] >= 0.6
    predicted = dltrain.predict(run, pd.DataFrame({"image": [str(p) for p in written[:5]]}))
    assert set(predicted["prediction"]) <= set(colors)


def test_an_image_with_a_local_path_is_used_where_it_is(tmp_path):
    from PIL import Image as PILImage

    from dltrain.data.huggingface import read
    from dltrain.data.sources import ResolvedSource

    paths = []
    for i in range(6):
        path = tmp_path / "photos" / "ab"[i % 2] / f"{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        PILImage.new("RGB", (8, 8), (i * 40, 0, 0)).save(path)
        paths.append(str(path))
    # a folder of images goes through load_dataset (imagefolder), which keeps each image's own path
    table = read(ResolvedSource("huggingface", path=str(tmp_path / "photos"), split="train"))
    assert sorted(table["image"]) == sorted(paths)
    assert sorted(table["label"]) == ["a", "a", "a", "b", "b", "b"]
    assert not (tmp_path / "cache" / "huggingface").exists()


def test_a_sequence_feature_is_a_sequence_column(tmp_path, capsys):
    rng = np.random.default_rng(0)
    series, labels = [], []
    for i in range(120):
        up = i % 2
        steps = np.cumsum(np.abs(rng.normal(1, 0.3, 12))) * (1 if up else -1)
        series.append(steps.astype("float32").tolist())
        labels.append(up)
    features = Features({"series": Sequence(Value("float32")), "trend": ClassLabel(names=["down", "up"]), "meta": {"a": Value("int32")}})
    Dataset.from_dict({"series": series, "trend": labels, "meta": [{"a": i} for i in range(120)]}, features=features).save_to_disk(tmp_path / "seq")
    run = tmp_path / "run"
    source = {"type": "huggingface", "path": str(tmp_path / "seq")}
    dltrain.fit(config(source, tmp_path, target="trend", layers=[{"GRU": 8}, {"Linear": "auto"}], epochs=8), out=run, progress=False)
    assert "column 'meta'" in capsys.readouterr().err  # a mapping: left out, with a warning
    assert json.loads((run / "data.json").read_text())["source"]["type"] == "huggingface"
    evaluated = dltrain.evaluate(run)
    assert evaluated.confusion["labels"] == ["down", "up"] and evaluated.metrics["accuracy"] >= 0.8


def test_a_target_dltrain_cannot_read_is_a_data_error(tmp_path, cli):
    features = Features({"x": Value("float32"), "meta": {"a": Value("int32")}})
    Dataset.from_dict({"x": [1.0, 2.0] * 10, "meta": [{"a": i % 2} for i in range(20)]}, features=features).save_to_disk(tmp_path / "ds")
    path = write(tmp_path / "c.yaml", json.dumps(config({"type": "huggingface", "path": str(tmp_path / "ds")}, tmp_path, target="meta")))
    result = cli("fit", path)
    assert result.code == 2 and "column 'meta'" in result.stderr and "cannot be a target" in result.stderr, result.output


def test_a_folder_of_parquet_files_goes_through_load_dataset(tmp_path):
    folder = tmp_path / "pq"
    folder.mkdir()
    frame = pd.read_csv(ROOT / "data" / "iris.csv")
    frame.iloc[:120].to_parquet(folder / "train.parquet")
    frame.iloc[120:].to_parquet(folder / "test.parquet")
    run = tmp_path / "run"
    # read chunk by chunk, as data larger than memory is
    dltrain.fit(config({"type": "huggingface", "path": str(folder)}, tmp_path, epochs=2, in_memory=False), out=run, progress=False)
    info = json.loads((run / "data.json").read_text())
    assert info["source"] == {"type": "huggingface", "path": str(folder), "split": "train"} and info["table_rows"] == 120


def test_a_hub_name_that_cannot_be_loaded_says_the_hub_needs_the_network(tmp_path, cli):
    path = write(tmp_path / "c.yaml", json.dumps(config({"type": "huggingface", "path": "nobody-here/no-such-dataset"}, tmp_path)))
    result = cli("fit", path)
    assert result.code == 2, result.output
    assert "nobody-here/no-such-dataset" in result.stderr and "network access" in result.stderr
    assert "Traceback" not in result.output


def test_without_the_datasets_package_the_extra_is_named(tmp_path, cli, monkeypatch):
    iris_dataset().save_to_disk(tmp_path / "iris")
    path = write(tmp_path / "c.yaml", json.dumps(config({"type": "huggingface", "path": str(tmp_path / "iris")}, tmp_path)))
    monkeypatch.setitem(sys.modules, "datasets", None)
    result = cli("fit", path)
    assert result.code == 2 and "pip install 'dltrain[huggingface]'" in result.stderr, result.output


def test_split_and_config_belong_to_huggingface_sources(tmp_path, cli):
    (tmp_path / "iris.csv").write_text((ROOT / "data" / "iris.csv").read_text())
    path = write(tmp_path / "c.yaml", json.dumps(config({"path": str(tmp_path / "iris.csv"), "split": "test"}, tmp_path)))
    result = cli("fit", path)
    assert result.code == 2 and "belong to huggingface sources" in result.output
