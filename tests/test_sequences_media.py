"""Sequences, text, audio and video end to end: generated data to a trained model, predict, bad input."""

import importlib.util
import json
import subprocess
import sys
import wave

import numpy as np
import pandas as pd
import pytest

from tests.conftest import ROOT, write


def generate(script, *args):
    subprocess.run([sys.executable, str(ROOT / "scripts" / script), *map(str, args)], check=True, capture_output=True)


# config, the generator that makes its data, the bar its test split reaches (the README states them)
SHIPPED = [
    ("sequences_lstm", "make_sequences.py", "sequences.csv", 0.9),
    ("sequences_gru", "make_sequences.py", "sequences.csv", 0.9),
    ("text_conv1d", "make_text.py", "sentences.csv", 0.9),
    ("sounds_cnn", "make_audio.py", "sounds", 0.9),
    ("motion_conv3d", "make_video.py", "motion", 0.9),
]


@pytest.mark.parametrize(("name", "script", "data", "bar"), SHIPPED)
def test_shipped_config_reaches_its_bar(workdir, cli, name, script, data, bar):
    generate(script, "--out", workdir / "data" / "generated" / data)  # where the shipped config looks
    result = cli("fit", f"configs/{name}.yaml")
    assert result.code == 0, result.output
    for hint in ("Overfitting", "Underfitting", "Still learning", "Warning"):  # the examples as a newcomer sees them
        assert hint not in result.output, result.output
    evaluated = json.loads(cli("evaluate", f"runs/{name}", "--json").stdout)
    assert evaluated["metrics"]["accuracy"] >= bar, evaluated
    if name in ("text_conv1d", "sounds_cnn") and importlib.util.find_spec("matplotlib"):  # the report of the shipped examples
        from tests.test_report import renders

        assert cli("report", f"runs/{name}").code == 0
        page = workdir / "runs" / name / "report_test.html"
        worst = page.read_text().split("The worst-predicted examples", 1)[1][:20000]
        assert ("<div class='thumbs'>" in worst) == (name == "sounds_cnn")  # sounds as spectrograms; text as its rows
        renders(page, workdir)


def test_sequences_predict_from_a_table_and_reject_words(tmp_path, cli):
    generate("make_sequences.py", "--out", tmp_path / "s.csv", "--rows", 300)
    config = write(tmp_path / "c.yaml", (ROOT / "configs" / "sequences_lstm.yaml").read_text().replace("../data/generated/sequences.csv", "s.csv"))
    assert cli("fit", config, "train.epochs=2", "--out", tmp_path / "run").code == 0
    table = pd.read_csv(tmp_path / "s.csv")
    rows = table.drop(columns="kind").head(5).copy()
    rows["series"] = ["[" + s.replace(" ", ", ") + "]" if i % 2 else s for i, s in enumerate(rows["series"])]  # JSON lists too
    rows.to_csv(tmp_path / "new.csv", index=False)
    predicted = cli("predict", tmp_path / "run", tmp_path / "new.csv")
    assert predicted.code == 0, predicted.output
    frame = pd.read_csv(__import__("io").StringIO(predicted.stdout))
    assert len(frame) == 5 and set(frame["prediction"]) <= {"sine", "square", "sawtooth"}
    assert np.allclose(frame.filter(like="prob_").sum(axis=1), 1, atol=1e-5)
    table.loc[7, "series"] = "0.1 0.2 high 0.4"
    table.to_csv(tmp_path / "s.csv", index=False)
    bad = cli("check", config)
    assert bad.code == 2 and "Traceback" not in bad.output
    assert "column 'series' is a sequence, but data row 8 holds 'high', which is not a number" in bad.stderr


def test_text_vocabulary_empty_cells_and_predict(tmp_path, cli):
    generate("make_text.py", "--out", tmp_path / "t.csv", "--rows", 400)
    table = pd.read_csv(tmp_path / "t.csv")
    table.loc[[3, 10], "text"] = ""
    table.to_csv(tmp_path / "t.csv", index=False)
    config = write(tmp_path / "c.yaml", (ROOT / "configs" / "text_conv1d.yaml").read_text().replace("../data/generated/sentences.csv", "t.csv"))
    checked = cli("check", config)
    assert checked.code == 0, checked.output
    assert "2 filled" in checked.stdout  # the empty cells: rows of padding, counted
    assert "num_embeddings=" in checked.stdout and "token ids per row" in checked.stdout
    assert cli("fit", config, "train.epochs=3", "--out", tmp_path / "run").code == 0
    import torch

    state = torch.load(tmp_path / "run" / "best.pt", weights_only=True)
    vocabulary = state["encoders"]["inputs"][0]["vocabulary"]
    assert vocabulary[:2] == ["<pad>", "<unk>"] and "goal" in vocabulary
    pd.DataFrame({"text": ["The coach saw a great goal!", "Rain and wind tonight", "", "zzz unknown words"]}).to_csv(tmp_path / "new.csv", index=False)
    predicted = cli("predict", tmp_path / "run", tmp_path / "new.csv", "-o", tmp_path / "p.csv")
    assert predicted.code == 0, predicted.output
    frame = pd.read_csv(tmp_path / "p.csv")
    assert list(frame["prediction"][:2]) == ["sport", "weather"]


def test_audio_other_sample_rates_are_resampled_and_folders_predict(tmp_path, cli):
    generate("make_audio.py", "--out", tmp_path / "sounds", "--per-class", 40)
    generate("make_audio.py", "--out", tmp_path / "other", "--per-class", 4, "--rate", 16000, "--seed", 5)
    for file in (tmp_path / "other" / "tone").iterdir():  # a few training files at another rate
        file.rename(tmp_path / "sounds" / "tone" / f"x{file.name}")
    config = write(tmp_path / "c.yaml", (ROOT / "configs" / "sounds_cnn.yaml").read_text().replace("../data/generated/sounds", "sounds"))
    result = cli("fit", config, "train.epochs=2", "--out", tmp_path / "run")
    assert result.code == 0, result.output
    predicted = cli("predict", tmp_path / "run", tmp_path / "other", "-o", tmp_path / "p.csv")
    assert predicted.code == 0, predicted.output
    frame = pd.read_csv(tmp_path / "p.csv")
    assert len(frame) == 8 and list(frame.columns[:2]) == ["path", "prediction"]  # chirp, noise: 4 each


def test_audio_sample_rate_inferred_with_a_warning(tmp_path, cli):
    generate("make_audio.py", "--out", tmp_path / "sounds", "--per-class", 10)
    generate("make_audio.py", "--out", tmp_path / "other", "--per-class", 2, "--rate", 16000)
    for file in (tmp_path / "other" / "noise").iterdir():
        file.rename(tmp_path / "sounds" / "noise" / f"x{file.name}")
    body = (ROOT / "configs" / "sounds_cnn.yaml").read_text().replace("../data/generated/sounds", "sounds")
    body = body.replace("      sample_rate: 8000       # every file resampled to this\n", "")
    result = cli("check", write(tmp_path / "c.yaml", body), "data.split={train: 0.8, val: 0.2}")
    assert result.code == 0, result.output
    assert "sample rates" in result.stderr and "resampled to 8000 Hz" in result.stderr


def test_a_broken_wav_and_a_non_pcm_wav(tmp_path, cli):
    generate("make_audio.py", "--out", tmp_path / "sounds", "--per-class", 10)
    broken = tmp_path / "sounds" / "tone" / "00001.wav"
    broken.write_bytes(broken.read_bytes()[:200])
    config = write(tmp_path / "c.yaml", (ROOT / "configs" / "sounds_cnn.yaml").read_text().replace("../data/generated/sounds", "sounds"))
    stopped = cli("fit", config, "train.epochs=1", "--out", tmp_path / "a")
    assert stopped.code == 2 and "1 sound(s) cannot be read" in stopped.stderr and "00001.wav" in stopped.stderr
    skipped = cli("fit", config, "train.epochs=1", "data.on_error=skip", "--out", tmp_path / "b")
    assert skipped.code == 0 and "1 sound(s) could not be read and were skipped" in skipped.stderr


def test_video_files_and_frame_folders(tmp_path, cli):
    pytest.importorskip("av")
    generate("make_video.py", "--out", tmp_path / "mp4", "--per-class", 12, "--format", "mp4")
    config = write(tmp_path / "c.yaml", (ROOT / "configs" / "motion_conv3d.yaml").read_text().replace("../data/generated/motion", "mp4"))
    result = cli("fit", config, "train.epochs=2", "--out", tmp_path / "run")
    assert result.code == 0, result.output
    generate("make_video.py", "--out", tmp_path / "frames", "--per-class", 2, "--seed", 3)
    predicted = cli("predict", tmp_path / "run", tmp_path / "frames" / "left", "-o", tmp_path / "p.csv")
    assert predicted.code == 0, predicted.output
    assert len(pd.read_csv(tmp_path / "p.csv")) == 2  # two clips, each a folder of frames


def test_a_corrupt_video_is_named_or_skipped(tmp_path, cli):
    generate("make_video.py", "--out", tmp_path / "motion", "--per-class", 10)
    (tmp_path / "motion" / "up" / "broken.mp4").write_bytes(b"\x00\x00\x00 ftypisom not really a video")
    config = write(tmp_path / "c.yaml", (ROOT / "configs" / "motion_conv3d.yaml").read_text().replace("../data/generated/motion", "motion"))
    stopped = cli("fit", config, "train.epochs=1", "--out", tmp_path / "a")
    assert stopped.code == 2 and "broken.mp4" in stopped.stderr and "Traceback" not in stopped.output
    skipped = cli("fit", config, "train.epochs=1", "data.on_error=skip", "--out", tmp_path / "b")
    assert skipped.code == 0, skipped.output
    assert "1 clip(s) could not be read and were skipped" in skipped.stderr


def test_wav_reader_widths(tmp_path):
    from dltrain.data.audio import read_wav

    t = np.arange(800) / 8000
    signal = 0.5 * np.sin(2 * np.pi * 440 * t)
    for width, encode in ((1, lambda s: (s * 127 + 128).astype(np.uint8).tobytes()), (2, lambda s: (s * 32767).astype("<i2").tobytes()), (4, lambda s: (s * 2**31 * 0.999).astype("<i4").tobytes())):
        path = tmp_path / f"w{width}.wav"
        with wave.open(str(path), "wb") as file:
            file.setnchannels(2)
            file.setsampwidth(width)
            file.setframerate(8000)
            file.writeframes(np.repeat(np.frombuffer(encode(signal), dtype=f"V{width}"), 2).tobytes())
        samples, rate = read_wav(str(path))
        assert rate == 8000 and len(samples) == 800
        assert np.allclose(samples, signal, atol=0.02), width


@pytest.mark.parametrize("kind", ["audio", "video"])
def test_sent_files_decode_as_stored_ones(tmp_path, kind):
    """A server's uploads are decoded from memory by the decoder that reads stored files."""
    if kind == "audio":
        from dltrain.data.audio import AudioEncoder as Encoder

        generate("make_audio.py", "--out", tmp_path / "data", "--per-class", 2)
        options = {"sample_rate": 8000}
    else:
        pytest.importorskip("av")
        from dltrain.data.video import VideoEncoder as Encoder

        generate("make_video.py", "--out", tmp_path / "data", "--per-class", 2, "--format", "mp4")
        options = {"frames": 4, "size": [16, 16]}
    paths = sorted(str(p) for p in (tmp_path / "data").rglob("*") if p.is_file())
    encoder = Encoder.fit("path", pd.Series(paths), options, use_cache=False)
    stored, kept = encoder.encode(pd.Series(paths), use_cache=False)
    sent, sent_kept = encoder.encode_sent([(p.rsplit("/", 1)[-1], open(p, "rb").read()) for p in paths] + [("junk.bin", b"junk")], on_error="skip")
    assert kept.all() and list(sent_kept) == [True] * len(paths) + [False]
    assert sent.shape == stored.shape and (sent == stored).all()
