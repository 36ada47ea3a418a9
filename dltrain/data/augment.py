"""The augmentation registry: random changes to batches of images, on the training split only.

Each works on a whole batch of floats in [0, 1], shape (batch, channels, height, width), on the
device the batch lives on, with its random numbers drawn from one seeded generator (kept in the
checkpoint, so a resumed run draws what an unbroken one would). Written as components:
`augment: [hflip, {crop: {padding: 4}}, {rotate: 15}, {brightness: 0.2}]`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from dltrain.components import Component, ComponentError, Registry, Signature, bind, parse_component


def _uniform(n: int, low: float, high: float, generator: torch.Generator, device) -> torch.Tensor:
    return (torch.rand(n, generator=generator) * (high - low) + low).to(device)


class HFlip:
    """Mirror left-right, each image with probability p."""

    def __init__(self, p: float = 0.5):
        if not 0 <= p <= 1:
            raise ValueError(f"p is a probability from 0 to 1, found {p}")
        self.p = float(p)

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        chosen = (torch.rand(x.shape[0], generator=generator) < self.p).to(x.device)
        return torch.where(chosen[:, None, None, None], x.flip(-1), x)


class VFlip(HFlip):
    """Mirror top-bottom, each image with probability p."""

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        chosen = (torch.rand(x.shape[0], generator=generator) < self.p).to(x.device)
        return torch.where(chosen[:, None, None, None], x.flip(-2), x)


class Crop:
    """Pad by `padding` pixels (with `fill`), then cut the original size back out at a random place."""

    def __init__(self, padding: int = 4, fill: float = 0.0):
        if padding < 0 or padding != int(padding):
            raise ValueError(f"padding is a whole number of pixels, 0 or more, found {padding}")
        self.padding, self.fill = int(padding), float(fill)

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        b, c, h, w = x.shape
        p = self.padding
        padded = F.pad(x, (p, p, p, p), value=self.fill)
        dy = torch.randint(0, 2 * p + 1, (b,), generator=generator).to(x.device)
        dx = torch.randint(0, 2 * p + 1, (b,), generator=generator).to(x.device)
        rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
        cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
        batch = torch.arange(b, device=x.device)[:, None, None, None]
        channel = torch.arange(c, device=x.device)[None, :, None, None]
        return padded[batch, channel, rows, cols]


class Rotate:
    """Turn each image by a random angle in [-degrees, degrees] about its centre."""

    def __init__(self, degrees: float = 15.0, fill: float = 0.0):
        if not 0 <= degrees <= 180:
            raise ValueError(f"degrees is the largest turn, from 0 to 180, found {degrees}")
        self.degrees, self.fill = float(degrees), float(fill)

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        angle = _uniform(x.shape[0], -self.degrees, self.degrees, generator, x.device) * (math.pi / 180)
        cos, sin = angle.cos(), angle.sin()
        zero = torch.zeros_like(cos)
        theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
        grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
        turned = F.grid_sample(x - self.fill, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        return turned + self.fill


class Brightness:
    """Scale each image's values by a random factor in [1 - factor, 1 + factor]."""

    def __init__(self, factor: float = 0.2):
        if not 0 <= factor <= 1:
            raise ValueError(f"factor is how far values may be scaled, from 0 to 1, found {factor}")
        self.factor = float(factor)

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        scale = _uniform(x.shape[0], 1 - self.factor, 1 + self.factor, generator, x.device)
        return (x * scale[:, None, None, None]).clamp_(0, 1)


class Contrast:
    """Move each image's values towards or away from its mean by a random factor in [1 - factor, 1 + factor]."""

    def __init__(self, factor: float = 0.2):
        if not 0 <= factor <= 1:
            raise ValueError(f"factor is how far values may be scaled, from 0 to 1, found {factor}")
        self.factor = float(factor)

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        scale = _uniform(x.shape[0], 1 - self.factor, 1 + self.factor, generator, x.device)[:, None, None, None]
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        return ((x - mean) * scale + mean).clamp_(0, 1)


AUGMENTATIONS: Registry[type] = Registry(
    "augmentation",
    {"hflip": HFlip, "vflip": VFlip, "crop": Crop, "rotate": Rotate, "brightness": Brightness, "contrast": Contrast},
)


def parse_augmentations(values: list, path: tuple = ()) -> list[Component]:
    """Check a list of augmentations against the registry and their arguments; ComponentError if wrong."""
    if not isinstance(values, list):
        raise ComponentError(f"augment is a list, like [hflip, {{rotate: 15}}]; found {values!r}", path)
    parsed = []
    for index, value in enumerate(values):
        component = parse_component(value, (*path, index), "augmentation")
        factory = AUGMENTATIONS.get(component.name)
        extra, kwargs = bind(component, Signature.of(factory))
        try:
            factory(*extra, **kwargs)  # its own range checks
        except ValueError as error:
            raise ComponentError(f"{component.name}: {error}", (*path, index)) from None
        parsed.append(Component(AUGMENTATIONS.resolve(component.name), component.args, component.kwargs, component.path))
    return parsed


def build_augmentations(values: list) -> list:
    built = []
    for component in parse_augmentations(values):
        factory = AUGMENTATIONS.get(component.name)
        extra, kwargs = bind(component, Signature.of(factory))
        built.append(factory(*extra, **kwargs))
    return built
