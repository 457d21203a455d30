"""One typed configuration for a run: frozen dataclasses, YAML in/out, dotted overrides.

Precedence (lowest to highest): dataclass defaults < YAML preset (`--config`) < CLI flags
(`--size`, `--steps`, ...) < `--set section.key=value`. The resolved config is validated
before anything is written and is stored in the run directory and in every checkpoint.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, Optional, Union, get_args, get_origin, get_type_hints

import yaml

from facecycle.errors import ConfigError

#: train.best_metric's default: a CycleGAN score; conditional runs read it as "mean/kid_x100".
DEFAULT_BEST_METRIC = "ab/kid_x100"


@dataclass(frozen=True)
class DataConfig:
    """Where the images are and how they are turned into training tensors."""

    data_a: Optional[str] = None  # folder of domain-A images (any nesting)
    data_b: Optional[str] = None  # folder of domain-B images
    masks_a: Optional[str] = None  # folder of masks for A, same relative names (mask-weighted cycle loss)
    masks_b: Optional[str] = None
    channels: int = 3  # 1 (grayscale) or 3 (RGB); every image is converted to this
    load_size: int = 286  # images are resized to load_size x load_size ...
    crop_size: int = 256  # ... then randomly cropped to crop_size (evaluation: resized to crop_size)
    flip: bool = True  # random horizontal flip while training
    num_workers: int = -1  # DataLoader workers; -1 = 0 on CPU (compute needs both cores), 4 on CUDA
    # Conditional mode (train.mode=conditional): one folder, one condition vector per image.
    images: Optional[str] = None  # folder of images (any nesting); label paths are relative to it
    labels: Optional[str] = None  # CSV: OpenFace AUxx_c/AUxx_r columns or a class column (facecycle.data.labels)
    label_kind: str = "presence"  # presence (AUxx_c, 0/1) | intensity (AUxx_r, 0-5) | categorical (one-hot)
    label_columns: str = ""  # comma-separated units/classes to use, in order; "" = all in the file (recorded after loading)


@dataclass(frozen=True)
class ModelConfig:
    """Generator and discriminator architecture (what a checkpoint must match)."""

    generator: str = "resnet"  # see facecycle.models.GENERATORS
    gen_width: int = 64
    gen_blocks: int = 9  # residual blocks (ResNet-6 / ResNet-9)
    gen_depth: int = 0  # U-Net downsamplings; 0 = chosen from crop_size
    gen_dropout: float = 0.0
    gen_attention: bool = False  # SAGAN-style self-attention in the generator bottleneck
    gen_upsample: str = "transpose"  # ResNet decoder: transpose (paper) | resize (nearest x2 + conv, no checkerboard)
    norm: str = "instance"  # instance | instance_affine | batch | none
    discriminator: str = "patch"  # see facecycle.models.DISCRIMINATORS
    disc_width: int = 64
    disc_layers: int = 3  # 3 = 70x70 PatchGAN; 5 = face-off "5-layer" D
    disc_layers_2: int = 5  # second discriminator of `dual` (face-off eq. 7)
    disc_scales: int = 2  # for `multiscale`
    spectral_norm: bool = False
    # Conditional mode only (generator conditional_resnet, discriminator conditional_patch):
    condition_dim: int = 0  # length of the condition vector; 0 = from the labels file
    condition_at: str = "both"  # where the tiled target is concatenated: input | bottleneck | both
    # Attention-guided output with a learned mask A. CycleGAN mode: A*content + (1-A)*x (A = 1
    # changes the pixel, facecycle.models.attention); conditional mode: GANimation's A*x + (1-A)*colour.
    attention_mask: bool = False
    # Where the CycleGAN-mode mask may open: none (anywhere) | face (a soft ellipse from the brows
    # to the chin of a face crop; forehead, hair and background are always the input's own).
    mask_prior: str = "none"


@dataclass(frozen=True)
class LossConfig:
    """Weights of the objective; a weight of 0 turns a term off."""

    gan: str = "lsgan"  # see facecycle.losses.GAN_LOSSES
    cycle_a: float = 10.0  # weight of |G_ba(G_ab(a)) - a|
    cycle_b: float = 10.0  # weight of |G_ab(G_ba(b)) - b|
    identity: float = 0.5  # identity weight ...
    identity_mode: str = "relative"  # ... relative: identity x cycle weight (CycleGAN paper); absolute: as is
    dual_lambda: float = 0.5  # lambda in lambda*L(D1) + (1-lambda)*L(D2) for the dual discriminator
    ssim: float = 0.0  # weight of (1 - SSIM) added to the cycle term
    ms_ssim: float = 0.0  # weight of (1 - MS-SSIM) added to the cycle term
    mask_weight: float = 0.0  # w in per-pixel cycle weight w*mask + 1 (needs data.masks_*)
    feature_cycle: float = 0.0  # L1 between D features of real and reconstructed images
    cycle_decay_to: float = 1.0  # cycle weight factor reached linearly at the last step (1 = no decay)
    gp: float = 10.0  # gradient-penalty weight for wgan-gp
    clip: float = 0.01  # weight clipping for wgan
    # Conditional mode: cycle_a is lambda_cyc for G(G(x, c_tgt), c_src) ~ x, identity_a the identity weight.
    condition: float = 10.0  # lambda_cl: condition loss (BCE for presence/categorical, MSE for intensity)
    # Attention masks (model.attention_mask). Conditional: mask_l1 keeps A from saturating at
    # 1 = "change nothing". CycleGAN mode (facecycle.losses.attention): mask_l1 is the sparsity of
    # the changed area, mask_min_area/mask_floor the guard against the all-copy mask.
    mask_l1: float = 0.1  # mean of the attention mask A
    mask_tv: float = 0.1  # total variation of A (smooth masks)
    mask_min_area: float = 0.15  # CycleGAN mode: each mask commits to at least this area, mean(A^2) ...
    mask_floor: float = 10.0  # ... enforced by this weight on relu(min_area - mean A)


@dataclass(frozen=True)
class OptimConfig:
    optimizer: str = "adam"  # adam | rmsprop (WGAN)
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    n_critic: int = 1  # discriminator steps per generator step


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 1000  # generator updates in the whole run
    decay_steps: int = -1  # last steps with linear LR decay to 0; -1 = half of `steps`
    batch_size: int = 1
    pool_size: int = 50  # history of generated images per domain (0 = off)
    seed: int = 0
    device: str = "auto"  # auto (CUDA when present) | cpu | cuda | cuda:N
    log_every: int = 10
    sample_every: int = 200
    checkpoint_every: int = 200
    keep_checkpoints: int = 3
    max_bad_steps: int = 5  # consecutive non-finite steps before the run stops
    # fp32 | bf16 | fp16 (fp16 needs CUDA) | auto (bf16 where the CPU/GPU runs it natively, else fp32).
    # The default stays fp32 so a run computes the same on every machine; auto is the fast choice.
    precision: str = "fp32"
    channels_last: bool = False
    # off | on | auto (torch.compile of the training forward passes; see facecycle.training.compile).
    # Older configs and checkpoints say true/false, read as on/off.
    compile: str = "off"
    # direct | winograd | auto: the algorithm of the 3×3 stride-1 convolutions (the ResNet blocks).
    # winograd = F(2×2, 3×3), 2.25× fewer multiplications, equal to direct to float rounding, fp32 on
    # the CPU only (elsewhere it runs direct); auto = winograd where that applies. direct is the
    # reference-equivalent default (bit-identical steps). See facecycle.ops.winograd.
    conv: str = "direct"
    eval_every: int = 0  # evaluate on a fixed held-out sample every N steps (0 = off)
    eval_metrics: str = "kid,lpips"  # comma-separated, see facecycle.evaluation.metrics.METRICS
    eval_images: int = 32  # images per domain in the held-out sample
    eval_data_a: Optional[str] = None  # held-out folders (default: evenly spaced images of the training folders);
    eval_data_b: Optional[str] = None  # conditional mode: eval_data_a only (default: evenly spaced labelled images)
    # Keep checkpoints/best.pt by this score (direction: declared in evaluation.metrics.REGISTRY). CycleGAN
    # scores are "ab/<score>", "ba/<score>"; conditional ones "<expression>/<score>" and "mean/<score>"
    # (the default ab/kid_x100 reads as mean/kid_x100 there).
    best_metric: str = DEFAULT_BEST_METRIC
    # Conditional mode: expressions (presets or class names) each held-out image is translated to
    # during in-training evaluation, comma-separated; "" = every one the model takes.
    eval_expressions: str = ""
    mode: str = "cyclegan"  # cyclegan (two domains, data_a/data_b) | conditional (data.images + data.labels)

    def __post_init__(self) -> None:
        # `compile` was a bool before issue 15; YAML's `on`/`off` also arrive as booleans.
        value = str(self.compile).strip().lower()
        value = {"true": "on", "yes": "on", "1": "on", "false": "off", "no": "off", "0": "off"}.get(value, value)
        object.__setattr__(self, "compile", value)


@dataclass(frozen=True)
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    # ---- conversions -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "Config":
        return _build(cls, raw or {}, prefix="")

    # ---- derived values -----------------------------------------------------------------
    @property
    def identity_a(self) -> float:
        """Weight of |G_ba(a) - a| (identity of domain A under the b->a generator)."""
        return self._identity(self.loss.cycle_a)

    @property
    def identity_b(self) -> float:
        return self._identity(self.loss.cycle_b)

    def _identity(self, cycle_weight: float) -> float:
        if self.loss.identity_mode == "relative":
            return self.loss.identity * cycle_weight
        return self.loss.identity

    @property
    def is_conditional(self) -> bool:
        return self.train.mode == "conditional"

    @property
    def decay_steps(self) -> int:
        return self.train.steps // 2 if self.train.decay_steps < 0 else self.train.decay_steps

    def validate(self) -> "Config":
        """Check every value that can be checked without data; returns self."""
        d, m, l, o, t = self.data, self.model, self.loss, self.optim, self.train
        problems: list[str] = self._number_problems()
        if d.channels not in (1, 3):
            problems.append(f"data.channels must be 1 or 3, got {d.channels}")
        if d.crop_size < 16:
            problems.append(f"data.crop_size must be >= 16, got {d.crop_size}")
        if d.load_size < d.crop_size:
            problems.append(f"data.load_size ({d.load_size}) must be >= data.crop_size ({d.crop_size})")
        if m.gen_upsample not in ("transpose", "resize"):
            problems.append(f"model.gen_upsample must be transpose or resize, got '{m.gen_upsample}'")
        if m.gen_upsample != "transpose" and m.generator != "resnet":
            problems.append(f"model.gen_upsample={m.gen_upsample} is only for the resnet generator")
        if m.mask_prior not in ("none", "face"):
            problems.append(f"model.mask_prior must be none or face, got '{m.mask_prior}'")
        if m.mask_prior != "none" and not m.attention_mask:
            problems.append("model.mask_prior needs model.attention_mask: true")
        if m.norm not in ("instance", "instance_affine", "batch", "none"):
            problems.append(f"model.norm must be instance, instance_affine, batch or none, got '{m.norm}'")
        if l.identity_mode not in ("relative", "absolute"):
            problems.append(f"loss.identity_mode must be relative or absolute, got '{l.identity_mode}'")
        if not 0.0 <= l.dual_lambda <= 1.0:
            problems.append(f"loss.dual_lambda must be in [0, 1], got {l.dual_lambda}")
        if not 0.0 <= l.cycle_decay_to <= 1.0:
            problems.append(f"loss.cycle_decay_to must be in [0, 1], got {l.cycle_decay_to}")
        for name in ("cycle_a", "cycle_b", "identity", "ssim", "ms_ssim", "mask_weight", "feature_cycle", "gp"):
            if getattr(l, name) < 0:
                problems.append(f"loss.{name} must be >= 0, got {getattr(l, name)}")
        if o.optimizer not in ("adam", "rmsprop"):
            problems.append(f"optim.optimizer must be adam or rmsprop, got '{o.optimizer}'")
        if o.n_critic < 1:
            problems.append(f"optim.n_critic must be >= 1, got {o.n_critic}")
        if t.steps < 1:
            problems.append(f"train.steps must be >= 1, got {t.steps}")
        if self.decay_steps > t.steps:
            problems.append(f"train.decay_steps ({self.decay_steps}) must be <= train.steps ({t.steps})")
        if t.batch_size < 1:
            problems.append(f"train.batch_size must be >= 1, got {t.batch_size}")
        if t.pool_size < 0:
            problems.append(f"train.pool_size must be >= 0, got {t.pool_size}")
        if t.precision not in ("auto", "fp32", "bf16", "fp16"):
            problems.append(f"train.precision must be auto, fp32, bf16 or fp16, got '{t.precision}'")
        if t.compile not in ("off", "on", "auto"):
            problems.append(f"train.compile must be off, on or auto, got '{t.compile}'")
        if t.conv not in ("direct", "winograd", "auto"):
            problems.append(f"train.conv must be direct, winograd or auto, got '{t.conv}'")
        for name in ("log_every", "sample_every", "checkpoint_every", "keep_checkpoints", "max_bad_steps"):
            if getattr(t, name) < 1:
                problems.append(f"train.{name} must be >= 1, got {getattr(t, name)}")
        # Names are checked against the registries lazily to keep this module import-light.
        from facecycle.losses import GAN_LOSSES
        from facecycle.models import DISCRIMINATORS, GENERATORS

        for registry, value in ((GENERATORS, m.generator), (DISCRIMINATORS, m.discriminator), (GAN_LOSSES, l.gan)):
            if value not in registry:
                problems.append(f"unknown {registry.kind} '{value}'; choose one of: {', '.join(registry.names())}")
        problems += self._mode_problems(GENERATORS, DISCRIMINATORS)
        if problems:
            raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(problems))
        return self

    def _number_problems(self) -> list[str]:
        """Range checks of the plain numbers, so a bad value is a config error before anything is
        written instead of a torch traceback at the first step (or a run that quietly diverges)."""
        d, m, l, o, t = self.data, self.model, self.loss, self.optim, self.train
        problems: list[str] = []
        for section in ("data", "model", "loss", "optim", "train"):
            for f in fields(getattr(self, section)):
                value = getattr(getattr(self, section), f.name)
                if isinstance(value, float) and not math.isfinite(value):
                    problems.append(f"{section}.{f.name} must be a finite number, got {value}")
        if problems:
            return problems
        positive = {"model.gen_width": m.gen_width, "model.disc_width": m.disc_width,
                    "model.disc_layers": m.disc_layers, "model.disc_layers_2": m.disc_layers_2,
                    "model.disc_scales": m.disc_scales, "optim.lr_g": o.lr_g, "optim.lr_d": o.lr_d,
                    "loss.clip": l.clip, "train.eval_images": t.eval_images}
        problems += [f"{key} must be > 0, got {value}" for key, value in positive.items() if value <= 0]
        at_least_zero = {"model.gen_blocks": m.gen_blocks, "model.gen_depth": m.gen_depth,
                         "train.seed": t.seed, "train.eval_every": t.eval_every}
        problems += [f"{key} must be >= 0, got {value}" for key, value in at_least_zero.items() if value < 0]
        for key, value in (("optim.beta1", o.beta1), ("optim.beta2", o.beta2), ("model.gen_dropout", m.gen_dropout)):
            if not 0.0 <= value < 1.0:
                problems.append(f"{key} must be in [0, 1), got {value}")
        if t.seed >= 2**32:
            problems.append(f"train.seed must be below 2^32, got {t.seed}")
        if d.num_workers < -1:
            problems.append(f"data.num_workers must be >= 0 (or -1 = automatic), got {d.num_workers}")
        return problems

    def _mode_problems(self, generators: Any, discriminators: Any) -> list[str]:
        """The conditional networks only pair with train.mode=conditional, and the other way round."""
        d, m, l, t = self.data, self.model, self.loss, self.train
        problems: list[str] = []
        if t.mode not in ("cyclegan", "conditional"):
            return [f"train.mode must be cyclegan or conditional, got '{t.mode}'"]
        cond = t.mode == "conditional"
        for registry, value, what in ((generators, m.generator, "generator"), (discriminators, m.discriminator, "discriminator")):
            if value not in registry:
                continue
            is_cond = bool(getattr(registry.get(value), "conditional", False))
            if is_cond != cond:
                choices = [n for n in registry.names() if bool(getattr(registry.get(n), "conditional", False)) == cond]
                problems.append(f"model.{what} '{value}' does not work with train.mode={t.mode}; "
                                f"choose one of: {', '.join(choices)}")
        if not 0.0 <= l.mask_min_area < 1.0:
            problems.append(f"loss.mask_min_area must be in [0, 1), got {l.mask_min_area}")
        for name in ("mask_l1", "mask_tv", "mask_floor"):
            if getattr(l, name) < 0:
                problems.append(f"loss.{name} must be >= 0, got {getattr(l, name)}")
        if not cond:
            if t.eval_expressions.strip():
                problems.append("train.eval_expressions is for conditional models (train.mode=conditional); "
                                "CycleGAN mode scores its two directions")
            return problems
        if d.label_kind not in ("presence", "intensity", "categorical"):
            problems.append(f"data.label_kind must be presence, intensity or categorical, got '{d.label_kind}'")
        if m.condition_at not in ("input", "bottleneck", "both"):
            problems.append(f"model.condition_at must be input, bottleneck or both, got '{m.condition_at}'")
        if m.condition_dim < 0:
            problems.append(f"model.condition_dim must be >= 0 (0 = from the labels), got {m.condition_dim}")
        if l.condition < 0:
            problems.append(f"loss.condition must be >= 0, got {l.condition}")
        # In-training evaluation (train.eval_every): one held-out folder, scores per target expression.
        if t.eval_data_b:
            problems.append("train.eval_data_b is a CycleGAN-mode setting; conditional mode evaluates on one "
                            "held-out folder: set train.eval_data_a (or leave it unset for labelled training images)")
        prefix = t.best_metric.split("/", 1)[0] if "/" in t.best_metric else ""
        if prefix in ("ab", "ba") and t.best_metric != DEFAULT_BEST_METRIC:
            problems.append(f"train.best_metric '{t.best_metric}' names a CycleGAN direction; conditional scores "
                            f"are named '<expression>/<score>' or 'mean/<score>' (e.g. mean/{t.best_metric.split('/', 1)[1]})")
        return problems


# ---- building from dicts, YAML and overrides ----------------------------------------------


def _build(cls: type, raw: dict[str, Any], prefix: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"config section '{prefix.rstrip('.') or 'root'}' must be a mapping, got {raw!r}")
    hints = get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(
            f"unknown config key(s) {', '.join(prefix + k for k in unknown)}; "
            f"valid keys in '{prefix.rstrip('.') or 'root'}': {', '.join(sorted(known))}"
        )
    values: dict[str, Any] = {}
    for name, value in raw.items():
        hint = hints[name]
        if is_dataclass(hint):
            values[name] = _build(hint, value, prefix + name + ".")
        else:
            values[name] = _coerce(value, hint, prefix + name)
    return cls(**values)


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Convert `value` (from YAML or a `--set` string) to the annotated type."""
    origin = get_origin(hint)
    if origin is Union:  # Optional[X]
        args = [a for a in get_args(hint) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
            return None
        return _coerce(value, args[0], key)
    try:
        if hint is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "yes", "1", "on"):
                return True
            if isinstance(value, str) and value.lower() in ("false", "no", "0", "off"):
                return False
            if isinstance(value, int) and value in (0, 1):
                return bool(value)
            raise ValueError
        if hint is int:
            if isinstance(value, bool):
                raise ValueError
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if hint is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if hint is str:
            if not isinstance(value, (str, int, float)):
                raise ValueError
            return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"config key {key} expects {getattr(hint, '__name__', hint)}, got {value!r}") from None
    return value


PRESET_DIR = Path(__file__).parent / "configs"


def preset_names() -> list[str]:
    """Presets shipped with the package (`configs/` in the repository)."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def preset_path(name_or_path: str | Path) -> Path:
    """A YAML path as given, or the shipped preset of that name (`demo`, `selfie2anime`, ...)."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    shipped = PRESET_DIR / f"{p.stem if p.suffix in ('.yaml', '.yml') else p.name}.yaml"
    if p.parent == Path(".") or p.parent.name == "configs":
        if shipped.is_file():
            return shipped
    raise ConfigError(f"config file not found: {p}; shipped presets: {', '.join(preset_names())}")


def load_yaml(path: str | Path) -> dict[str, Any]:
    p = preset_path(path)
    try:
        raw = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {p} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {p} must contain a mapping of sections (data, model, loss, optim, train)")
    return raw


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `section.key=value` strings to a nested dict (a deep copy is returned)."""
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in raw.items()}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set expects section.key=value, got '{item}'")
        key, value = item.split("=", 1)
        parts = key.strip().split(".")
        if len(parts) != 2:
            raise ConfigError(f"--set key must look like section.key (e.g. train.steps), got '{key}'")
        section, name = parts
        parsed = yaml.safe_load(value) if value.strip() else None
        out.setdefault(section, {})
        if not isinstance(out[section], dict):
            raise ConfigError(f"config section '{section}' is not a mapping")
        out[section][name] = parsed
    return out


def size_flags(size: int | None) -> dict[str, int]:
    """`--size N`: train on N x N crops of images resized to N * 286/256 (the reference's 286 -> 256)."""
    if size is None:
        return {}
    return {"data.crop_size": size, "data.load_size": max(size, round(size * 286 / 256))}


def _merge_sections(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """`base` with `top`'s keys laid over it, section by section (neither is modified)."""
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in base.items()}
    for section, values in top.items():
        if isinstance(values, dict):
            out.setdefault(section, {}).update(values)
        else:
            out[section] = values
    return out


def set_values(raw: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """Set dotted keys whose value is not None (CLI convenience flags)."""
    return apply_overrides(raw, [f"{k}={_yaml_scalar(v)}" for k, v in values.items() if v is not None])


def _yaml_scalar(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("\n...").strip()


def resolve(
    preset: str | Path | None = None, overrides: list[str] | None = None, flags: dict[str, Any] | None = None,
    base: dict[str, Any] | None = None,
) -> Config:
    """Defaults < base < preset YAML < flags < overrides, validated: the one place that orders them.

    base: a raw config that comes before the preset, e.g. a run's stored config.yaml on --resume
    (a preset given then changes only the sections/keys it names)."""
    raw = _merge_sections(base or {}, load_yaml(preset) if preset else {})
    raw = set_values(raw, flags or {})
    raw = apply_overrides(raw, overrides or [])
    return Config.from_dict(raw).validate()


def with_values(config: Config, **sections: dict[str, Any]) -> Config:
    """Return a copy with some section fields replaced: with_values(c, train={"steps": 5})."""
    updates = {name: replace(getattr(config, name), **vals) for name, vals in sections.items()}
    return replace(config, **updates)
