"""Network shapes, initialisation, odd input sizes through the inference padding."""

from __future__ import annotations

import pytest
import torch

from facecycle.config import Config, with_values
from facecycle.errors import ConfigError
from facecycle.inference.translate import pad_to_multiple
from facecycle.build import build_discriminator, build_generator
from tiny import tiny_model


def tiny(**model) -> Config:
    return with_values(Config(), data={"crop_size": 32, "load_size": 32},
                       model=tiny_model(**model))


def test_paper_model_sizes() -> None:
    config = Config()
    g, d = build_generator(config), build_discriminator(config)
    # Same parameter counts as the reference ResNet-9 generator and 70x70 PatchGAN.
    assert sum(p.numel() for p in g.parameters()) == 11_378_179
    assert sum(p.numel() for p in d.parameters()) == 2_764_737
    weights = torch.cat([m.weight.flatten() for m in g.modules() if isinstance(m, torch.nn.Conv2d)])
    assert abs(weights.std().item() - 0.02) < 0.002 and abs(weights.mean().item()) < 0.001


@pytest.mark.parametrize("generator", ["resnet", "unet"])
@pytest.mark.parametrize("size", [(50, 70), (33, 45), (17, 9)])
def test_generators_keep_odd_sizes_after_padding(generator: str, size: tuple[int, int]) -> None:
    g = build_generator(tiny(generator=generator, gen_attention=True)).eval()
    x = torch.rand(2, 3, *size) * 2 - 1
    padded, (h, w) = pad_to_multiple(x, g.size_multiple)
    assert padded.shape[-2] % g.size_multiple == 0 and padded.shape[-1] % g.size_multiple == 0
    with torch.no_grad():
        out = g(padded)[..., :h, :w]
    assert out.shape == x.shape and out.abs().max() <= 1


def test_discriminator_variants_return_weighted_branches() -> None:
    x = torch.randn(1, 3, 96, 96)
    dual = build_discriminator(with_values(tiny(discriminator="dual", disc_layers=3, disc_layers_2=5),
                                           data={"crop_size": 96, "load_size": 96}, loss={"dual_lambda": 0.25}))
    out = dual(x)
    assert len(out) == 2 and dual.branch_weights == [0.25, 0.75]
    assert out[0].shape[-1] > out[1].shape[-1]  # the 5-layer D sees larger patches
    ms = build_discriminator(with_values(tiny(discriminator="multiscale", disc_scales=3, spectral_norm=True),
                                         data={"crop_size": 96, "load_size": 96}))
    assert len(ms(x)) == 3 and ms.branch_weights == pytest.approx([1 / 3] * 3)


def test_too_small_input_for_deep_discriminator_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="needs at least 96 px"):
        build_discriminator(tiny(disc_layers=5))


def test_spectral_norm_layers_get_the_paper_initialisation() -> None:
    """With model.spectral_norm the N(0, 0.02) init reaches the raw weights (it used to miss the
    parametrization API and leave PyTorch's default init), and the normalised weight has a
    largest singular value near 1 from the first step (15 power iterations, as torch's own
    spectral_norm does when applied; one more per training forward refines it)."""
    from facecycle.config import Config, with_values
    from facecycle.build import build_discriminator
    from facecycle.models.layers import raw_weight

    torch.manual_seed(0)
    config = with_values(Config(), data={"crop_size": 64, "load_size": 64}, model={"spectral_norm": True})
    convs = [m for m in build_discriminator(config).modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(torch.nn.utils.parametrize.is_parametrized(m, "weight") for m in convs)
    for conv in convs:
        assert abs(raw_weight(conv).std().item() - 0.02) < 0.003
        sigma = torch.linalg.matrix_norm(conv.weight.detach().flatten(1), ord=2).item()
        assert 0.6 < sigma < 1.6, sigma  # PyTorch's default init before the fix: far from the 0.02 std


def test_face_region_discriminator_judges_the_whole_face_and_the_mouth() -> None:
    """`face`: two distinct PatchGANs, one on the image, one on MOUTH_REGION; a change outside the
    mouth region moves only the first branch's logits; too small a size is a config error."""
    from facecycle.config import Config, with_values
    from facecycle.build import build_discriminator
    from facecycle.models.discriminators import MOUTH_REGION

    torch.manual_seed(0)
    config = with_values(Config(), data={"crop_size": 64, "load_size": 64},
                         model={"discriminator": "face", "disc_width": 8})
    d = build_discriminator(config).eval()
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    whole, mouth = d(x)
    assert whole.shape == (2, 1, 6, 6) and mouth.shape[:2] == (2, 1)
    changed = x.clone()
    changed[..., : round(MOUTH_REGION[0] * 64) - 1, :] = 0  # everything above the mouth region
    whole_2, mouth_2 = d(changed)
    assert torch.equal(mouth, mouth_2) and not torch.equal(whole, whole_2)
    assert d.branch_weights == [0.5, 0.5]
    with pytest.raises(ConfigError, match="at least 54 px"):
        build_discriminator(with_values(config, data={"crop_size": 48, "load_size": 48}))
