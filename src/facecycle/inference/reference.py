"""Generators trained with the reference CycleGAN code, converted into facecycle generators.

The reference (junyanz/pytorch-CycleGAN-and-pix2pix) saves each generator as a plain state dict
(`latest_net_G_A.pth` maps A -> B, `latest_net_G_B.pth` maps B -> A; a test-only model is
`latest_net_G.pth`). facecycle's ResNet and U-Net generators have the same layers in the same
order, so importing is a renaming of keys, with the architecture read off the tensors:

- ResNet (`resnet_9blocks`, `resnet_6blocks`, any block count): `model.<i>.*` -> `net.<i>.*`,
  residual blocks `model.<i>.conv_block.<j>.*` -> `net.<i>.body.<j>.*`.
- U-Net (`unet_128` = 7 downsamplings, `unet_256` = 8): the reference nests one
  `UnetSkipConnectionBlock` per level (`model.model.1.model.3.model...`); level k's down conv
  and norm become `down.<k>.*`, its up conv and norm `up.<depth-1-k>.*`. The reference
  concatenates `[skip, decoder]`, facecycle `[decoder, skip]`, so the up convs' two input
  halves are swapped.
- Norms: `instance` (no parameters; running statistics that old reference versions stored are
  dropped, as the reference itself does when it loads them), `batch` (conv without bias, running
  statistics kept: facecycle runs generators in eval mode, i.e. the reference's `test.py --eval`),
  and the affine-instance-norm variant of many tutorials and packages (`InstanceNorm2d(affine=True)`
  with conv biases, residual blocks named `block`), which becomes `norm="instance_affine"`.

Dropout has no weights and is the identity at inference, so it never changes the result.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import torch
from torch import nn

from facecycle.errors import CheckpointError, ConfigError

if TYPE_CHECKING:
    from facecycle.config import Config

SUPPORTED = ("resnet_9blocks, resnet_6blocks (any block count) and unet_128/unet_256 (any depth >= 5) "
             "with instance, batch or affine instance norm")
_STATS = ("running_mean", "running_var", "num_batches_tracked")
_RESNET_BLOCK = re.compile(r"^model\.(\d+)\.(?:conv_block|block)\.(\d+)\.(\w+)$")
_RESNET_LAYER = re.compile(r"^model\.(\d+)\.(\w+)$")


@dataclass(frozen=True)
class ReferenceArchitecture:
    """What a reference generator state dict holds, in facecycle's terms."""

    generator: str  # facecycle generator: "resnet" or "unet"
    in_channels: int
    out_channels: int
    width: int  # the reference's ngf
    norm: str  # "instance", "batch" or "instance_affine"
    blocks: int = 0  # ResNet residual blocks
    depth: int = 0  # U-Net downsamplings (the reference's num_downs)
    dropout: bool = False  # ResNet blocks built with use_dropout (shifts their layer indices)

    @property
    def reference_name(self) -> str:
        """The reference's --netG name (`resnet_9blocks`, `unet_256`, ...)."""
        if self.generator == "resnet":
            return f"resnet_{self.blocks}blocks"
        return {7: "unet_128", 8: "unet_256"}.get(self.depth, f"unet (num_downs={self.depth})")

    def generator_kwargs(self) -> dict[str, Any]:
        """Constructor arguments of the matching facecycle generator."""
        kwargs: dict[str, Any] = dict(in_channels=self.in_channels, out_channels=self.out_channels, width=self.width,
                                      norm=self.norm, dropout=0.5 if self.dropout else 0.0)
        if self.generator == "resnet":
            kwargs["blocks"] = self.blocks
        else:
            kwargs["depth"] = self.depth
        return kwargs

    def describe(self) -> str:
        return (f"{self.reference_name}, ngf {self.width}, {self.norm} norm, "
                f"{self.in_channels}->{self.out_channels} channels")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A reference `.pth` file as a flat `{key: tensor}` dict (loaded with `weights_only=True`).

    A `module.` prefix (nn.DataParallel) is removed, and a dict that wraps the weights under one
    key (`state_dict`, `model`, ...) is unwrapped.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"reference generator file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for foreign or corrupt files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise CheckpointError(f"cannot load {path} as a state dict ({type(exc).__name__}: {first}); "
                              "facecycle loads plain state dicts only and never unpickles code") from None
    if isinstance(state, dict) and len(state) == 1:
        (inner,) = state.values()
        if isinstance(inner, dict):
            state = inner
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} is not a generator state dict (expected a dict of tensors, as the reference "
                              "saves with torch.save(net.state_dict(), ...))")
    return {k.removeprefix("module."): v for k, v in state.items()}


def detect_architecture(state: Mapping[str, torch.Tensor], source: str | Path = "state dict") -> ReferenceArchitecture:
    """Read the architecture off the keys and tensor shapes of a reference generator."""
    if any(k.startswith("model.model.") for k in state):
        return _detect_unet(state, source)
    if "model.1.weight" in state:
        return _detect_resnet(state, source)
    keys = ", ".join(list(state)[:4])
    raise CheckpointError(f"{source}: not a reference CycleGAN generator (keys start with {keys}); "
                          f"facecycle imports {SUPPORTED}")


def _norm_kind(state: Mapping[str, torch.Tensor], conv: str, norm: str, source: str | Path) -> str:
    """Norm of the generator from its first conv (`conv` prefix) and the norm after it (`norm` prefix)."""
    affine = f"{norm}.weight" in state
    conv_bias = f"{conv}.bias" in state
    stats = f"{norm}.running_mean" in state
    if not affine:
        return "instance"  # any running statistics are leftovers of old reference versions
    if not conv_bias:
        return "batch"
    if stats:
        raise CheckpointError(f"{source}: cannot tell batch norm from affine instance norm (the convs have biases and "
                              "the norms have running statistics); facecycle imports the reference's layouts: "
                              f"{SUPPORTED}")
    return "instance_affine"


def _detect_resnet(state: Mapping[str, torch.Tensor], source: str | Path) -> ReferenceArchitecture:
    blocks: set[int] = set()
    second_conv: set[int] = set()
    layers: list[int] = []
    for key in state:
        if m := _RESNET_BLOCK.match(key):
            blocks.add(int(m.group(1)))
            if m.group(3) == "weight" and state[key].dim() == 4 and int(m.group(2)) > 1:
                second_conv.add(int(m.group(2)))
        elif m := _RESNET_LAYER.match(key):
            if m.group(2) == "weight" and state[key].dim() == 4:
                layers.append(int(m.group(1)))
    if not blocks or not layers:
        raise CheckpointError(f"{source}: no residual blocks found; facecycle imports {SUPPORTED}")
    first, last = state["model.1.weight"], state[f"model.{max(layers)}.weight"]
    return ReferenceArchitecture(
        generator="resnet", in_channels=int(first.shape[1]), out_channels=int(last.shape[0]), width=int(first.shape[0]),
        norm=_norm_kind(state, "model.1", "model.2", source), blocks=len(blocks),
        dropout=second_conv == {6},  # Dropout(0.5) after the first ReLU moves the second conv from 5 to 6
    )


def _unet_prefix(level: int) -> str:
    """Key prefix of the reference U-Net's skip block at `level` (0 = outermost)."""
    if level == 0:
        return "model.model."
    return "model.model.1.model." + "3.model." * (level - 1)


def _unet_down_index(level: int) -> int:
    return 0 if level == 0 else 1  # the outermost block has no LeakyReLU in front of its conv


def _detect_unet(state: Mapping[str, torch.Tensor], source: str | Path) -> ReferenceArchitecture:
    depth = 0
    while f"{_unet_prefix(depth)}{_unet_down_index(depth)}.weight" in state:
        depth += 1
    if depth < 2 or "model.model.3.weight" not in state:
        raise CheckpointError(f"{source}: an incomplete U-Net ({depth} levels found); facecycle imports {SUPPORTED}")
    first, last = state["model.model.0.weight"], state["model.model.3.weight"]  # ConvTranspose2d: (in, out, k, k)
    return ReferenceArchitecture(
        generator="unet", in_channels=int(first.shape[1]), out_channels=int(last.shape[1]), width=int(first.shape[0]),
        norm=_norm_kind(state, f"{_unet_prefix(1)}1", f"{_unet_prefix(1)}2", source), depth=depth,
    )


def _unet_key_map(depth: int) -> dict[str, str]:
    """Reference module path -> facecycle module path for every layer with weights."""
    mapping: dict[str, str] = {}
    for level in range(depth):
        p, up = _unet_prefix(level), f"up.{depth - 1 - level}"
        mapping[f"{p}{_unet_down_index(level)}"] = f"down.{level}.{_unet_down_index(level)}"
        if level == 0:
            mapping[f"{p}3"] = f"{up}.1"  # ReLU, ConvTranspose2d, Tanh
        elif level == depth - 1:  # innermost: LeakyReLU, conv, ReLU, ConvTranspose2d, norm
            mapping[f"{p}3"], mapping[f"{p}4"] = f"{up}.1", f"{up}.2"
        else:  # LeakyReLU, conv, norm, submodule, ReLU, ConvTranspose2d, norm
            mapping[f"{p}2"] = f"down.{level}.2"
            mapping[f"{p}5"], mapping[f"{p}6"] = f"{up}.1", f"{up}.2"
    return mapping


def convert_state(state: Mapping[str, torch.Tensor], arch: ReferenceArchitecture) -> dict[str, torch.Tensor]:
    """Reference keys -> facecycle keys (no checking; see `import_generator`)."""
    keep_stats = arch.norm == "batch"
    out: dict[str, torch.Tensor] = {}
    unet = _unet_key_map(arch.depth) if arch.generator == "unet" else {}
    for key, value in state.items():
        module, _, param = key.rpartition(".")
        if param in _STATS and not keep_stats:
            continue
        if arch.generator == "resnet":
            if m := _RESNET_BLOCK.match(key):
                new = f"net.{m.group(1)}.body.{m.group(2)}.{param}"
            else:
                new = "net." + key.removeprefix("model.")
        else:
            new = f"{unet[module]}.{param}" if module in unet else key  # unknown keys surface in the check
            if param == "weight" and new.startswith("up.") and not new.startswith("up.0.") and value.dim() == 4:
                value = _swap_skip_halves(value)
        out[new] = value
    return out


def _swap_skip_halves(weight: torch.Tensor) -> torch.Tensor:
    """A ConvTranspose2d weight `(C_in, C_out, k, k)` with its two input halves swapped.

    The reference concatenates `[encoder skip, decoder]` before each up conv, facecycle
    `[decoder, encoder skip]`; both halves have the same width, so swapping them keeps the
    function (up to the float summation order).
    """
    half = weight.shape[0] // 2
    return torch.cat([weight[half:], weight[:half]], dim=0)


def build_generator(arch: ReferenceArchitecture) -> nn.Module:
    """The facecycle generator with `arch`'s hyper-parameters (weights uninitialised)."""
    from facecycle.models.registry import GENERATORS

    return GENERATORS.get(arch.generator)(**arch.generator_kwargs())


def import_generator(path: str | Path) -> tuple[ReferenceArchitecture, dict[str, torch.Tensor]]:
    """Read a reference generator file; returns its architecture and a facecycle state dict.

    The converted weights are checked key for key and shape for shape against the facecycle
    generator of that architecture; a file that does not fit raises CheckpointError saying which
    keys differ.
    """
    state = read_state_dict(path)
    arch = detect_architecture(state, path)
    converted = convert_state(state, arch)
    expected = build_generator(arch).state_dict()
    if arch.norm == "batch":
        for key in expected:  # files from PyTorch < 0.4 have no BN step counters
            if key.endswith(".num_batches_tracked") and key not in converted:
                converted[key] = torch.zeros((), dtype=torch.long)
    missing = [k for k in expected if k not in converted]
    unexpected = [k for k in converted if k not in expected]
    wrong = [f"{k} {tuple(converted[k].shape)} != {tuple(v.shape)}" for k, v in expected.items()
             if k in converted and converted[k].shape != v.shape]
    if missing or unexpected or wrong:
        problems = ([f"missing {', '.join(missing[:3])}"] if missing else []) + \
                   ([f"not in facecycle's layout: {', '.join(unexpected[:3])}"] if unexpected else []) + \
                   ([f"shape {', '.join(wrong[:3])}"] if wrong else [])
        raise CheckpointError(f"{path}: looks like a reference {arch.reference_name} but does not match facecycle's "
                              f"{arch.generator} generator ({'; '.join(problems)}); facecycle imports {SUPPORTED}")
    if arch.in_channels != arch.out_channels:
        raise ConfigError(f"{path}: the generator maps {arch.in_channels} to {arch.out_channels} channels; facecycle "
                          "models keep the channel count (1 or 3)")
    return arch, {k: converted[k].detach().float().contiguous() if converted[k].is_floating_point()
                  else converted[k] for k in expected}


IMPORT_INFO = "imported.json"  # written next to checkpoints/ to say where the weights came from


def imported_config(arch: ReferenceArchitecture, crop_size: int | None = None) -> Config:
    """A facecycle config whose generator is `arch` (the discriminator part is facecycle's default)."""
    from facecycle.config import Config

    size = crop_size or (2 ** arch.depth if arch.generator == "unet" else 256)
    raw: dict[str, Any] = {
        "data": {"channels": arch.in_channels, "crop_size": size, "load_size": max(size, round(size * 286 / 256))},
        "model": {"generator": arch.generator, "gen_width": arch.width, "norm": arch.norm,
                  "gen_dropout": 0.5 if arch.dropout else 0.0,
                  **({"gen_blocks": arch.blocks} if arch.generator == "resnet" else {"gen_depth": arch.depth})},
    }
    return Config.from_dict(raw).validate()


def write_imported_model(out_dir: str | Path, files: Mapping[str, str | Path], crop_size: int | None = None) -> Path:
    """Import reference generator files into a facecycle model folder; returns the checkpoint path.

    `files`: {"a2b": path, "b2a": path} (one or both). The folder gets the layout of a run
    directory, so `translate`, `evaluate`, `export`, `serve` and `Translator.load` take it as is:
    `out_dir/checkpoints/step_00000000.pt` (a facecycle checkpoint with nets G_ab/G_ba and the
    config) and `out_dir/imported.json` (source files and detected architecture). It holds no
    optimiser state, so it cannot be resumed with `facecycle train --resume`.
    """
    import json

    from facecycle import __version__
    from facecycle.inference.loading import DIRECTIONS
    from facecycle.runtime import checkpoints as ckpt
    from facecycle.runtime.checkpoints import CHECKPOINT_FORMAT

    if not files:
        raise ConfigError("nothing to import: give the A->B generator (G_A), the B->A one (G_B), or both")
    out = Path(out_dir)
    if ckpt.list_checkpoints(out):
        raise ConfigError(f"{out} already holds checkpoints; choose another --out")
    imported = {direction: import_generator(path) for direction, path in files.items()}
    archs = {arch for arch, _ in imported.values()}
    if len(archs) > 1:
        raise ConfigError("the two generators have different architectures (" +
                          "; ".join(f"{d}: {a.describe()}" for d, (a, _) in imported.items()) +
                          "); a facecycle model has one architecture for both directions: import them separately")
    (arch,) = archs
    config = imported_config(arch, crop_size)
    state = {
        "format": CHECKPOINT_FORMAT,
        "version": __version__,
        "config": config.to_dict(),
        "nets": {DIRECTIONS[d]: weights for d, (_, weights) in imported.items()},
        "imported": {"from": "reference CycleGAN", "architecture": arch.reference_name, "norm": arch.norm,
                     "files": {d: str(Path(p).resolve()) for d, p in files.items()}},
    }
    path = ckpt.checkpoint_path(out, 0)
    ckpt.atomic_save(state, path)
    info = {**state["imported"], "description": arch.describe(), "crop_size": config.data.crop_size,
            "facecycle_version": __version__, "checkpoint": str(path.relative_to(out))}
    (out / IMPORT_INFO).write_text(json.dumps(info, indent=2) + "\n")
    return path
