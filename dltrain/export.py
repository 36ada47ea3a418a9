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

from dltrain.errors import DltrainError, UsageError

FORMATS = {"torchscript": "model.torchscript.pt", "export": "model.pt2", "onnx": "model.onnx"}


@dataclass(frozen=True)
class Exported:
    model: Path
    encoders: Path


def _sample(spec, batch: int = 2) -> torch.Tensor:
    dtype = torch.long if spec.dtype == "long" else torch.float32
    return torch.zeros((batch, *spec.shape), dtype=dtype)


def export(run: str | Path, format: str = "torchscript", output: str | Path | None = None) -> Exported:
    from dltrain.files import write_atomic, write_json
    from dltrain.inference import load_run
    from dltrain.model.builder import InputSpec

    if format not in FORMATS:
        raise UsageError(f"--format is one of {', '.join(FORMATS)}, found {format!r}")
    loaded = load_run(run, device="cpu")
    model = loaded.model.eval()
    spec = InputSpec.from_dict(loaded.state["input_spec"])
    folder = Path(output) if output else loaded.run_dir / "export"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / FORMATS[format]
    sample = _sample(spec)
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
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:300]
        raise DltrainError(f"this model cannot be exported as {format}: {reason}") from None
    task = loaded.task
    description = {
        "format": format,
        "model": target.name,
        "input": {"shape": ["batch", *spec.shape], "dtype": "int64" if spec.dtype == "long" else "float32"},
        "encoders": loaded.state["encoders"],
        "output": {
            "loss": task.loss.name,
            "means": task.loss.output,  # logits, log_probs, probs or values
            "classes": list(task.classes),
            "target_mean": task.mean,
            "target_std": task.std,
        },
    }
    encoders = folder / "encoders.json"
    write_json(encoders, description)
    return Exported(target, encoders)
