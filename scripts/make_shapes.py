"""Generate the shapes image data set: coloured shapes of random size, place and colour on noisy backgrounds.

    python scripts/make_shapes.py                       # data/generated/shapes/<class>/<n>.png, 750 per class
    python scripts/make_shapes.py --out DIR --per-class N --size 32 --seed 0

Four classes (circle, square, triangle, cross), 32x32 RGB PNG files in one folder per class, the
layout `dltrain fit` reads as an image source. A few thousand images take seconds. The files are
generated, never committed (data/generated/ is in .gitignore).
"""

from __future__ import annotations

import argparse
import colorsys
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

CLASSES = ("circle", "square", "triangle", "cross")


def _colour(rng: np.random.Generator, lightness: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hls_to_rgb(rng.random(), lightness, 0.5 + 0.5 * rng.random())
    return int(r * 255), int(g * 255), int(b * 255)


def draw(shape: str, size: int, rng: np.random.Generator) -> Image.Image:
    """One image: a shape of random size, position, rotation and colour on a noisy background."""
    dark = rng.random() < 0.5  # light shapes on dark ground, or the other way round
    ground = np.array(_colour(rng, 0.2 if dark else 0.8), dtype=np.float32)
    pixels = ground + rng.normal(0, 18, (size, size, 3))
    image = Image.fromarray(pixels.clip(0, 255).astype(np.uint8), "RGB")
    pen = ImageDraw.Draw(image)
    fill = _colour(rng, 0.75 if dark else 0.25)
    r = rng.uniform(size * 0.18, size * 0.38)
    cx, cy = rng.uniform(r + 1, size - r - 1, 2)
    turn = rng.uniform(0, math.pi / 2)
    if shape == "circle":
        pen.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
    elif shape == "square":
        pen.polygon(_polygon(cx, cy, r, 4, turn), fill=fill)
    elif shape == "triangle":
        pen.polygon(_polygon(cx, cy, r, 3, turn), fill=fill)
    else:
        width = max(2.0, r / 2.5)
        for angle in (turn, turn + math.pi / 2):
            dx, dy = math.cos(angle) * r, math.sin(angle) * r
            pen.line((cx - dx, cy - dy, cx + dx, cy + dy), fill=fill, width=int(round(width)))
    return image


def _polygon(cx: float, cy: float, r: float, sides: int, turn: float) -> list[tuple[float, float]]:
    return [(cx + r * math.cos(turn + 2 * math.pi * k / sides), cy + r * math.sin(turn + 2 * math.pi * k / sides)) for k in range(sides)]


def generate(out: Path, per_class: int, size: int = 32, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for shape in CLASSES:
        folder = out / shape
        folder.mkdir(parents=True, exist_ok=True)
        for n in range(per_class):
            draw(shape, size, rng).save(folder / f"{n:05d}.png")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    root = Path(__file__).resolve().parent.parent
    parser.add_argument("--out", type=Path, default=root / "data" / "generated" / "shapes")
    parser.add_argument("--per-class", type=int, default=750)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    generate(args.out, args.per_class, args.size, args.seed)
    print(f"{args.per_class * len(CLASSES)} images in {args.out}")


if __name__ == "__main__":
    main()
