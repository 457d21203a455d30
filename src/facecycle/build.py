"""The one place that turns a Config into network constructor calls (two-domain and conditional nets).

The network modules register their classes by name and never see a Config; only this module does."""

from __future__ import annotations

import inspect

from torch import nn

from facecycle.config import Config
from facecycle.errors import ConfigError
from facecycle.models.attention import AttentionGenerator
from facecycle.models.layers import init_weights
from facecycle.models.registry import DISCRIMINATORS, GENERATORS


def unet_depth_for(size: int) -> int:
    """Downsamplings that bring `size` to a 1x1 bottleneck, capped to [5, 8] (128 -> 7, 256 -> 8)."""
    depth = max(size.bit_length() - 1, 5)
    return min(depth, 8)


def build_generator(config: Config, in_channels: int | None = None, out_channels: int | None = None) -> nn.Module:
    """A freshly initialised generator (N(0, 0.02)) as the config describes.

    With `model.attention_mask` the network is an AttentionGenerator: the base generator gets
    one more output channel, the mask, and returns `A * content + (1 - A) * x`."""
    m = config.model
    cls = GENERATORS.get(m.generator)
    c_in = in_channels if in_channels is not None else config.data.channels
    c_out = out_channels if out_channels is not None else config.data.channels
    kwargs: dict = dict(in_channels=c_in, out_channels=c_out, width=m.gen_width, norm=m.norm,
                        dropout=m.gen_dropout, attention=m.gen_attention)
    if m.generator == "resnet":
        kwargs["blocks"] = m.gen_blocks
        if m.gen_upsample != "transpose":  # only passed when set: other resnet-like builders keep their signature
            kwargs["upsample"] = m.gen_upsample
    elif m.generator == "unet":
        kwargs["depth"] = depth = m.gen_depth or unet_depth_for(config.data.crop_size)
        size = config.data.crop_size
        if size % 2**depth:  # each level halves the size and the skips must match on the way up
            fits = [2**depth * k for k in (size // 2**depth, size // 2**depth + 1) if k > 0]
            raise ConfigError(
                f"data.crop_size {size} does not fit the U-Net generator with {depth} downsamplings "
                f"(model.gen_depth{'' if m.gen_depth else ', chosen from the size'}): the size must be a multiple "
                f"of 2^{depth} = {2**depth}; use --size {' or '.join(map(str, fits))}, or a smaller model.gen_depth")
    if m.attention_mask:
        # One extra output channel becomes the attention mask (facecycle.models.attention).
        kwargs["out_channels"] = c_out + 1
        net: nn.Module = AttentionGenerator(cls(**kwargs), channels=c_out, prior=m.mask_prior)
    else:
        net = cls(**kwargs)
    init_weights(net)
    return net


def _parameters(cls: type) -> set[str]:
    """The keyword arguments `cls.__init__` names."""
    return set(inspect.signature(cls).parameters)


def build_discriminator(config: Config, in_channels: int | None = None) -> nn.Module:
    """A freshly initialised discriminator (N(0, 0.02)) as the config describes."""
    m = config.model
    cls = DISCRIMINATORS.get(m.discriminator)
    settings = dict(
        in_channels=in_channels if in_channels is not None else config.data.channels,
        width=m.disc_width, layers=m.disc_layers, layers_2=m.disc_layers_2, scales=m.disc_scales,
        norm=m.norm, spectral_norm=m.spectral_norm, dual_lambda=config.loss.dual_lambda,
    )
    # Each design names the settings it uses (`layers_2`/`dual_lambda` only "dual", `scales` only
    # "multiscale", ...); it is given those and nothing else, so a constructor never needs a
    # catch-all for the others.
    net = cls(**{k: v for k, v in settings.items() if k in _parameters(cls)})
    if config.data.crop_size < net.min_size:
        raise ConfigError(
            f"data.crop_size {config.data.crop_size} is too small for discriminator '{m.discriminator}' with "
            f"{m.disc_layers}/{m.disc_layers_2} layers: it needs at least {net.min_size} px; "
            "raise the size or lower model.disc_layers"
        )
    init_weights(net)
    return net


def build_conditional_generator(config: Config) -> nn.Module:
    """A freshly initialised conditional generator as `config` describes (model.condition_dim must be set)."""
    m = config.model
    net = GENERATORS.get(m.generator)(
        in_channels=config.data.channels, out_channels=config.data.channels, condition_dim=m.condition_dim,
        width=m.gen_width, blocks=m.gen_blocks, norm=m.norm, dropout=m.gen_dropout, attention=m.gen_attention,
        condition_at=m.condition_at, attention_mask=m.attention_mask)
    init_weights(net)
    return net


def build_conditional_discriminator(config: Config) -> nn.Module:
    """A freshly initialised conditional critic (with its condition head) as `config` describes."""
    m = config.model
    net = DISCRIMINATORS.get(m.discriminator)(
        in_channels=config.data.channels, condition_dim=m.condition_dim, width=m.disc_width, layers=m.disc_layers,
        norm=m.norm, spectral_norm=m.spectral_norm)
    if config.data.crop_size < net.min_size:
        raise ConfigError(f"data.crop_size {config.data.crop_size} is too small for a {m.disc_layers}-layer "
                          f"critic: it needs at least {net.min_size} px; raise the size or lower model.disc_layers")
    init_weights(net)
    return net
