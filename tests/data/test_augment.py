import pytest
import torch

from dltrain.components import ComponentError
from dltrain.data.augment import AUGMENTATIONS, build_augmentations, parse_augmentations


def batch(seed=0):
    return torch.rand(16, 3, 12, 10, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", AUGMENTATIONS.names())
def test_shape_range_and_determinism(name):
    (augmentation,) = build_augmentations([name])
    x = batch()
    a = augmentation(x.clone(), torch.Generator().manual_seed(7))
    b = augmentation(x.clone(), torch.Generator().manual_seed(7))
    c = augmentation(x.clone(), torch.Generator().manual_seed(8))
    assert a.shape == x.shape and a.dtype == x.dtype
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    assert torch.equal(a, b)  # the same seed, the same batch
    assert not torch.equal(a, c)  # another seed, another batch
    assert not torch.equal(a, x)


def test_flips_mirror_exactly_the_chosen_images():
    (flip,) = build_augmentations([{"hflip": {"p": 1.0}}])
    x = batch()
    assert torch.equal(flip(x, torch.Generator()), x.flip(-1))
    (never,) = build_augmentations([{"vflip": 0.0}])
    assert torch.equal(never(x, torch.Generator()), x)


def test_crop_moves_the_image_by_at_most_the_padding():
    (crop,) = build_augmentations([{"crop": {"padding": 2}}])
    x = torch.zeros(64, 1, 9, 9)
    x[:, :, 4, 4] = 1.0  # one bright pixel in the middle
    out = crop(x, torch.Generator().manual_seed(0))
    rows, cols = torch.nonzero(out[:, 0] == 1.0, as_tuple=True)[1:]
    assert rows.min() >= 2 and rows.max() <= 6 and cols.min() >= 2 and cols.max() <= 6
    assert len(rows) == 64  # never cut away: the shift is at most the padding


def test_rotate_keeps_the_centre():
    (rotate,) = build_augmentations([{"rotate": 30}])
    x = torch.zeros(8, 1, 11, 11)
    x[:, :, 5, 5] = 1.0
    out = rotate(x, torch.Generator().manual_seed(0))
    assert torch.allclose(out[:, 0, 5, 5], torch.ones(8), atol=1e-4)


def test_brightness_scales_within_its_factor():
    (brightness,) = build_augmentations([{"brightness": 0.2}])
    x = torch.full((32, 1, 4, 4), 0.5)
    out = brightness(x, torch.Generator().manual_seed(0))
    assert float(out.min()) >= 0.4 - 1e-6 and float(out.max()) <= 0.6 + 1e-6


def test_unknown_names_and_arguments_are_explained():
    with pytest.raises(ComponentError, match="unknown augmentation 'hflp'. Did you mean 'hflip'"):
        parse_augmentations(["hflp"])
    with pytest.raises(ComponentError, match="crop has no argument .pad.. Did you mean .padding."):
        parse_augmentations([{"crop": {"pad": 4}}])
    with pytest.raises(ComponentError, match="augment is a list"):
        parse_augmentations("hflip")


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ({"crop": {"padding": -4}}, "padding is a whole number of pixels, 0 or more, found -4"),
        ({"brightness": -5}, "factor is how far values may be scaled, from 0 to 1, found -5"),
        ({"hflip": {"p": 7}}, "p is a probability from 0 to 1, found 7"),
        ({"rotate": "abc"}, "argument 'degrees' takes a number, found 'abc'"),
    ],
)
def test_arguments_out_of_range_are_refused_when_the_config_is_read(value, fragment):
    with pytest.raises(ComponentError, match=fragment.replace("(", r"\(")):
        parse_augmentations([value])
