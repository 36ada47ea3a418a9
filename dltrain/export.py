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
from dltrain.files import write_atomic, write_json

FORMATS = {"torchscript": "model.torchscript.pt", "export": "model.pt2", "onnx": "model.onnx"}


@dataclass(frozen=True)
class Exported:
    model: Path
    encoders: Path


def export(run: str | Path, format: str = "torchscript", output: str | Path | None = None) -> Exported:
    """The model of a run (from its checkpoint alone) as `format`, with encoders.json beside it."""
    if format not in FORMATS:
        raise UsageError(f"--format is one of {', '.join(FORMATS)}, found {format!r}")
    loaded = load_run(run, device="cpu")
    model = loaded.model.eval()
    spec = loaded.recipe.input
    folder = Path(output) if output else loaded.run_dir / "export"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / FORMATS[format]
    sample = spec.zeros(2)
    try:
        if format == "torchscript":
            with torch.no_grad():
                traced = torch.jit.trace(model, sample, check_trace=False)
            import io

            buffer = io.BytesIO()
            torch.jit.save(traced, buffer)
            write_atomic(target, buffer.getvalue())
        elif format == "export":
            batch = torch.export.Dim("batch", min=1)
            program = torch.export.export(model, (sample,), dynamic_shapes=({0: batch},))
            torch.export.save(program, str(target))
        else:
            try:
                import onnx  # noqa: F401
            except ImportError:
                raise DltrainError("ONNX export needs the onnx extra: pip install 'dltrain[onnx]'") from None
            torch.onnx.export(
                model, (sample,), str(target), input_names=["input"], output_names=["output"],
                dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}}, dynamo=False,
            )  # fmt: skip
    except DltrainError:
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
            "target_mean": task.mean,
            "target_std": task.std,
        },
    }
    encoders = folder / "encoders.json"
    write_json(encoders, description)
    return Exported(target, encoders)
