"""Generate the motion data set: short clips of a square moving left, right, up or down.

    python scripts/make_video.py              # data/generated/motion/<direction>/<n>/frame_00.png ...
    python scripts/make_video.py --format mp4 # .mp4 files instead (needs PyAV: pip install av)

Eight 16x16 RGB frames per clip, 150 clips per direction, in one folder per class: each clip is a
folder of frame images (no extra package needed to read them) or a video file. The square has a
random colour, size, start and speed, on a noisy background of another colour.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

DIRECTIONS = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}


def clip(direction: str, frames: int, size: int, rng: np.random.Generator) -> list[np.ndarray]:
    dx, dy = DIRECTIONS[direction]
    side = int(rng.integers(3, 6))
    speed = rng.uniform(0.8, 1.3)
    travel = speed * (frames - 1)
    margin = size - side
    x0 = rng.uniform(travel, margin) if dx < 0 else rng.uniform(0, max(0.0, margin - travel)) if dx > 0 else rng.uniform(0, margin)
    y0 = rng.uniform(travel, margin) if dy < 0 else rng.uniform(0, max(0.0, margin - travel)) if dy > 0 else rng.uniform(0, margin)
    ground, colour = rng.integers(0, 120, 3), rng.integers(130, 256, 3)
    out = []
    for t in range(frames):
        pixels = np.clip(ground + rng.normal(0, 12, (size, size, 3)), 0, 255)
        x, y = int(round(x0 + dx * speed * t)), int(round(y0 + dy * speed * t))
        pixels[y : y + side, x : x + side] = colour
        out.append(pixels.astype(np.uint8))
    return out


def generate(out: Path, per_class: int, frames: int = 8, size: int = 16, seed: int = 0, format: str = "frames") -> Path:
    rng = np.random.default_rng(seed)
    for direction in DIRECTIONS:
        (out / direction).mkdir(parents=True, exist_ok=True)
        for n in range(per_class):
            images = clip(direction, frames, size, rng)
            if format == "mp4":
                _write_mp4(out / direction / f"{n:05d}.mp4", images)
                continue
            folder = out / direction / f"{n:05d}"
            folder.mkdir(exist_ok=True)
            for t, pixels in enumerate(images):
                Image.fromarray(pixels, "RGB").save(folder / f"frame_{t:02d}.png")
    return out


def _write_mp4(path: Path, images: list[np.ndarray]) -> None:
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=8)
        stream.width, stream.height, stream.pix_fmt = images[0].shape[1], images[0].shape[0], "yuv420p"
        for pixels in images:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
        container.mux(stream.encode())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "data" / "generated" / "motion")
    parser.add_argument("--per-class", type=int, default=150)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--format", choices=("frames", "mp4"), default="frames")
    args = parser.parse_args()
    generate(args.out, args.per_class, args.frames, args.size, args.seed, args.format)
    print(f"{args.per_class * len(DIRECTIONS)} clips in {args.out}")


if __name__ == "__main__":
    main()
