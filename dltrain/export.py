"""`dltrain export`: a trained model as a file that runs without dltrain, and its encoders as JSON.

Formats: `torchscript` (torch.jit, model.torchscript.pt), `export` (torch.export, model.pt2) and
`onnx` (model.onnx, through the optional extra: pip install 'dltrain[onnx]'). Beside the model,
encoders.json holds what turns raw rows into the model's input and its output into answers: the
input encoders (means, standard deviations, classes, vocabularies, image normalization), the
target's classes or its mean and standard deviation, and what the output means.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from dltrain.checkpoint import load_run
from dltrain.errors import DltrainError, UsageError, first_line
from dltrain.files import check_output, json_pieces, write_output

FORMATS = {"torchscript": "model.torchscript.pt", "export": "model.pt2", "onnx": "model.onnx"}
REFUSAL = "was not written by dltrain export"
WHAT = ""  # messages name the file alone: it is in --output or in RUN/export


@dataclass(frozen=True)
class Exported:
    model: Path
    encoders: Path


def export(run: str | Path, format: str = "torchscript", output: str | Path | None = None) -> Exported:
    """The model of a run (from its checkpoint alone) as `format`, with encoders.json beside it."""
    if format not in FORMATS:
        raise UsageError(f"--format is one of {', '.join(FORMATS)}, found {format!r}")
    folder = Path(output) if output is not None else None
    if folder is not None and folder.exists() and not folder.is_dir():
        raise UsageError(f"--output {folder}: a file, not a folder; export writes {FORMATS[format]} and encoders.json into a folder")
    loaded = load_run(run, device="cpu")
    model = loaded.model.eval()
    spec = loaded.recipe.input
    folder = folder or loaded.run_dir / "export"
    target, encoders = folder / FORMATS[format], folder / "encoders.json"
    for path in (target, encoders):  # both refused before anything is written
        check_output(path, WHAT, REFUSAL)
    sample = spec.zeros(2)
    try:
        if format == "torchscript":
            with torch.no_grad():
                traced = torch.jit.trace(model, sample, check_trace=False)
            write_output(target, lambda tmp: torch.jit.save(traced, str(tmp)), WHAT, REFUSAL)
        elif format == "export":
            batch = torch.export.Dim("batch", min=1)
            program = torch.export.export(model, (sample,), dynamic_shapes=({0: batch},))
            write_output(target, lambda tmp: torch.export.save(program, str(tmp)), WHAT, REFUSAL)
        else:
            try:
                import onnx  # noqa: F401
            except ImportError:
                raise DltrainError("ONNX export needs the onnx extra: pip install 'dltrain[onnx]'") from None

            def save_onnx(tmp: Path) -> None:
                torch.onnx.export(
                    model, (sample,), str(tmp), input_names=["input"], output_names=["output"],
                    dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}}, dynamo=False,
                )  # fmt: skip

            write_output(target, save_onnx, WHAT, REFUSAL)
    except (DltrainError, OSError):
        raise
    except Exception as error:  # tracing and exporting fail in many ways for unusual layers
        raise DltrainError(f"this model cannot be exported as {format}: {first_line(error)}") from None
    task = loaded.task
    description = {
        "format": format,
        "model": target.name,
        "input": {"shape": ["batch", *spec.shape], "dtype": "int64" if spec.dtype == "long" else "float32"},
        "encoders": loaded.schema.to_dict(),
        "output": {
            "loss": loaded.recipe.loss.name,
            "means": task.output,  # logits, log_probs, probs or values
            "classes": list(task.classes),
            "threshold": task.threshold,  # a binary target: the positive class above this probability (train.threshold)
            "target_mean": task.mean,
            "target_std": task.std,
            "target_transform": task.transform,  # undone after the std and mean: dltrain.task.untransform
        },
    }
    write_output(encoders, json_pieces(description), WHAT, REFUSAL)
    return Exported(target, encoders)

