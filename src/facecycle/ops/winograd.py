"""Winograd F(2×2, 3×3) convolution for fp32 on the CPU: the same 3×3 convolution with 2.25× fewer
multiplications, forward and both backwards (issue 15).

Why: on the CPU, an fp32 CycleGAN step is ~90 % convolutions, and ~70 % of those are the ResNet
blocks' 3×3 256→256 convolutions, which oneDNN runs at about the machine's matrix-product rate.
Winograd's minimal filtering computes every 2×2 block of outputs from a 4×4 input tile with 16
multiplications per (input, output) channel pair instead of 36, as 16 independent matrix
products — the same products serve the backward passes (the transforms are linear, so their
adjoints are short elementwise sums). The result equals the direct convolution to float rounding
(relative error ~1e-6 in outputs and gradients; tested), not bit for bit, so it is opt-in
(`train.conv=winograd|auto`), never the reference-equivalent default.

Layout: tiles are kept as `(4, 4, C, N, th, tw)` so each of the 16 products is one
`(K, C) @ (C, N·th·tw)` matrix product (one `bmm` for all 16). Each input or gradient is split once
by row and column parity (one strided copy), after which every tap of every tile is a unit-stride
slice: a transform is then a handful of elementwise ops written straight into its output
(`out=`), with no autograd graph of slices (the Function below has its own backward). Big inputs
go through in chunks of ~512 tiles (`CHUNK_TILES`); only convolutions of at least 256 channels
switch (`MIN_CHANNELS`), where it measured faster. `benchmarks/winograd_layers.py` re-measures both.

Ground-level: imports only torch.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["winograd_conv2d", "WinogradConv2d", "set_conv_algorithm", "eligible"]


def _parity_view(x: torch.Tensor) -> torch.Tensor:
    """`(N, C, H, W)` (H, W even, any strides) as a `(2, 2, C, N, H/2, W/2)` view: [row parity,
    column parity, ...]. Splitting a dimension in two is always a view, so this also works on a
    band (a slice of rows) of a larger tensor."""
    N, C, H, W = x.shape
    return x.unflatten(3, (W // 2, 2)).unflatten(2, (H // 2, 2)).permute(3, 5, 1, 0, 2, 4)


def _parity_split(x: torch.Tensor) -> torch.Tensor:
    """`_parity_view(x)` made contiguous, so every tap of every tile below is a unit-stride slice
    (one strided copy here, none later)."""
    return _parity_view(x).contiguous()


def _input_tiles(x: torch.Tensor, th: int, tw: int) -> torch.Tensor:
    """B^T d B for every 4×4 tile of `x` `(N, C, 2·th+2, 2·tw+2)` -> `(4, 4, C, N, th, tw)`.

    B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]; tap r of tile i is input
    row 2i + r = parity r % 2, half-row i + r // 2."""
    xd = _parity_split(x)                                            # (2, 2, C, N, th+1, tw+1)
    C, N = xd.shape[2], xd.shape[3]
    # Columns: taps 0..3 = (even, +0), (odd, +0), (even, +1), (odd, +1).
    c0, c2 = xd[:, 0].narrow(-1, 0, tw), xd[:, 0].narrow(-1, 1, tw)   # (2, C, N, th+1, tw)
    c1, c3 = xd[:, 1].narrow(-1, 0, tw), xd[:, 1].narrow(-1, 1, tw)
    cols = x.new_empty((4, 2, C, N, th + 1, tw))                     # [b, row parity, ...]
    torch.sub(c0, c2, out=cols[0])
    torch.add(c1, c2, out=cols[1])
    torch.sub(c2, c1, out=cols[2])
    torch.sub(c1, c3, out=cols[3])
    r0, r2 = cols[:, 0].narrow(-2, 0, th), cols[:, 0].narrow(-2, 1, th)  # (4, C, N, th, tw)
    r1, r3 = cols[:, 1].narrow(-2, 0, th), cols[:, 1].narrow(-2, 1, th)
    v = x.new_empty((4, 4, C, N, th, tw))                            # [a, b, ...]
    torch.sub(r0, r2, out=v[0])
    torch.add(r1, r2, out=v[1])
    torch.sub(r2, r1, out=v[2])
    torch.sub(r1, r3, out=v[3])
    return v


def _overlap_taps(e0: torch.Tensor, e1: torch.Tensor, e2: torch.Tensor, e3: torch.Tensor, dim: int,
                  out: torch.Tensor) -> None:
    """Tile contributions to taps 0..3 along `dim` (each `count` tiles long) laid down into `out`
    `(2, ..., count + 1, ...)` [parity first]: tap r of tile i lands at parity r % 2, position
    i + r // 2, so taps 2 and 3 of tile i share a position with taps 0 and 1 of tile i + 1. Every
    position is written once (no zero fill, no read-modify-write)."""
    count = e0.shape[dim]
    for parity, (first, second) in enumerate(((e0, e2), (e1, e3))):
        o = out[parity]
        o.narrow(dim, 0, 1).copy_(first.narrow(dim, 0, 1))
        torch.add(first.narrow(dim, 1, count - 1), second.narrow(dim, 0, count - 1),
                  out=o.narrow(dim, 1, count - 1))
        o.narrow(dim, count, 1).copy_(second.narrow(dim, count - 1, 1))


def _input_tiles_adjoint(dv: torch.Tensor, dx: torch.Tensor, accumulate: bool) -> None:
    """The adjoint of `_input_tiles`: `(4, 4, C, N, th, tw)` into the gradient `dx`
    `(N, C, 2·th+2, 2·tw+2)` (any strides), added to it (`accumulate`: neighbouring bands share
    rows) or written over it. B^T's columns give tap 0 <- v0, 1 <- v1 - v2 + v3,
    2 <- v1 + v2 - v0, 3 <- -v3, first along rows (a), then along columns (b)."""
    _, _, C, N, th, tw = dv.shape

    def taps(v0: torch.Tensor, v1: torch.Tensor, v2: torch.Tensor, v3: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        return v0, torch.sub(v1, v2).add_(v3), torch.add(v1, v2).sub_(v0), torch.neg(v3)

    rows = dv.new_empty((2, 4, C, N, th + 1, tw))                    # [row parity, b, ...]
    _overlap_taps(*taps(dv[0], dv[1], dv[2], dv[3]), dim=-2, out=rows)
    dxd = dv.new_empty((2, 2, C, N, th + 1, tw + 1))                 # [row parity, column parity, ...]
    _overlap_taps(*taps(rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3]), dim=-1, out=dxd.transpose(0, 1))
    target = _parity_view(dx)
    target.add_(dxd) if accumulate else target.copy_(dxd)


# G ⊗ G as a (16, 9) matrix: row a·4 + b, column i·3 + j, with G = [[1, 0, 0], [1/2, 1/2, 1/2],
# [1/2, -1/2, 1/2], [0, 0, 1]]. The filter transforms are one small matrix product each: G g G^T of
# every filter is `_GG @ g.view(9)`, so no strided copies of the (K, C, 3, 3) weights are needed.
_G = torch.tensor([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]])
_GG = torch.kron(_G, _G)


def _weight_tiles(w: torch.Tensor) -> torch.Tensor:
    """G g G^T for every filter `(K, C, 3, 3)` -> `(16, K, C)`."""
    K, C = w.shape[:2]
    gg = _GG.to(dtype=w.dtype, device=w.device)
    return torch.mm(gg, w.reshape(K * C, 9).t()).view(16, K, C)


def _weight_tiles_adjoint(du: torch.Tensor) -> torch.Tensor:
    """The adjoint of `_weight_tiles`: `(16, K, C)` -> gradient `(K, C, 3, 3)` (a permuted view:
    autograd adds it into the contiguous `.grad` without a copy of its own)."""
    _, K, C = du.shape
    gg = _GG.to(dtype=du.dtype, device=du.device)
    return torch.mm(gg.t(), du.reshape(16, K * C)).view(3, 3, K, C).permute(2, 3, 0, 1)


def _output_untile(m: torch.Tensor, out: torch.Tensor) -> None:
    """A^T m A for every tile, `(4, 4, K, N, th, tw)`, written into `out` `(N, K, 2·th, 2·tw)`
    (any strides).

    A^T = [[1, 1, 1, 0], [0, 1, -1, -1]]."""
    _, _, K, N, th, tw = m.shape
    cols = m.new_empty((4, 2, K, N, th, tw))                         # [a, b, ...]
    torch.add(m[:, 0], m[:, 1], out=cols[:, 0]).add_(m[:, 2])
    torch.sub(m[:, 1], m[:, 2], out=cols[:, 1]).sub_(m[:, 3])
    y = m.new_empty((2, 2, K, N, th, tw))                            # [row parity, column parity, ...]
    torch.add(cols[0], cols[1], out=y[0]).add_(cols[2])
    torch.sub(cols[1], cols[2], out=y[1]).sub_(cols[3])
    _parity_view(out).copy_(y)


def _output_untile_adjoint(dy: torch.Tensor) -> torch.Tensor:
    """The adjoint of `_output_untile`: gradient `(N, K, 2·th, 2·tw)` -> `(4, 4, K, N, th, tw)`."""
    dyd = _parity_split(dy)                                          # (2, 2, K, N, th, tw)
    # A columns: tap 0 <- (1, 0), tap 1 <- (1, 1), tap 2 <- (1, -1), tap 3 <- (0, -1).
    rows = dy.new_empty((4,) + dyd.shape[1:])                        # [a, column parity, ...]
    rows[0].copy_(dyd[0])
    torch.add(dyd[0], dyd[1], out=rows[1])
    torch.sub(dyd[0], dyd[1], out=rows[2])
    torch.neg(dyd[1], out=rows[3])
    dm = dy.new_empty((4, 4) + dyd.shape[2:])
    dm[:, 0].copy_(rows[:, 0])
    torch.add(rows[:, 0], rows[:, 1], out=dm[:, 1])
    torch.sub(rows[:, 0], rows[:, 1], out=dm[:, 2])
    torch.neg(rows[:, 1], out=dm[:, 3])
    return dm


#: Tiles one pass handles: bigger batches and images go through in chunks (whole samples, or
#: bands of tile rows of one sample), so the buffers of a pass stay cache-sized and below the
#: allocator's mmap threshold (a fresh mmap costs a page fault per 4 KiB), while each of the 16
#: products still has enough columns to run at full rate. Measured on an AVX2 core (256 channels):
#: one pass over 128 px batch 8 (33 MB of tiles) ran slower than the direct convolution; 64 tiles
#: per pass (1 MB) 25 % slower again; 512 best (`benchmarks/winograd_layers.py --chunks`).
CHUNK_TILES = 512


def _chunks(N: int, th: int, tw: int) -> list[tuple[int, int, int, int]]:
    """`(n0, n1, i0, i1)`: samples n0..n1-1, tile rows i0..i1-1, about CHUNK_TILES tiles each."""
    rows = max(1, -(-CHUNK_TILES // tw))
    if rows >= th:
        samples = max(1, CHUNK_TILES // (th * tw))
        return [(n, min(n + samples, N), 0, th) for n in range(0, N, samples)]
    return [(n, n + 1, i, min(i + rows, th)) for n in range(N) for i in range(0, th, rows)]


class _WinogradConv(torch.autograd.Function):
    """Valid (unpadded) 3×3 stride-1 convolution of `x` `(N, C, 2·th+2, 2·tw+2)` with `weight`
    `(K, C, 3, 3)` -> `(N, K, 2·th, 2·tw)`, with its own backward.

    Saves `x` and the filter tiles, like the direct convolution saves `x` and the filter, and
    transforms each chunk of `x` again in the backward: keeping the tiles instead would save that
    transform (~2 % of a training step) for 3.5× the activation memory of these layers."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        N, C, H, W = x.shape
        K = weight.shape[0]
        th, tw = (H - 2) // 2, (W - 2) // 2
        u = _weight_tiles(weight)
        y = x.new_empty((N, K, 2 * th, 2 * tw))
        for n0, n1, i0, i1 in _chunks(N, th, tw):
            v = _input_tiles(x[n0:n1, :, 2 * i0: 2 * i1 + 2], i1 - i0, tw).view(16, C, -1)
            m = torch.bmm(u, v).view(4, 4, K, n1 - n0, i1 - i0, tw)
            _output_untile(m, y[n0:n1, :, 2 * i0: 2 * i1])
        if any(ctx.needs_input_grad):
            ctx.save_for_backward(x, u)
        return y

    @staticmethod
    def backward(ctx: Any, dy: torch.Tensor) -> tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
        x, u = ctx.saved_tensors
        N, C, H, W = x.shape
        K = u.shape[1]
        th, tw = (H - 2) // 2, (W - 2) // 2
        need_x, need_w = ctx.needs_input_grad[:2]
        chunks = _chunks(N, th, tw)
        banded = any(i1 - i0 < th for _, _, i0, i1 in chunks)  # bands of one sample share rows
        dx = None
        if need_x:
            dx = (torch.zeros_like if banded else torch.empty_like)(x, memory_format=torch.contiguous_format)
        du: Optional[torch.Tensor] = None
        for n0, n1, i0, i1 in chunks:
            dm = _output_untile_adjoint(dy[n0:n1, :, 2 * i0: 2 * i1]).view(16, K, -1)
            if dx is not None:
                dv = torch.bmm(u.transpose(1, 2), dm)                 # (16, C, tiles)
                _input_tiles_adjoint(dv.view(4, 4, C, n1 - n0, i1 - i0, tw), dx[n0:n1, :, 2 * i0: 2 * i1 + 2],
                                     accumulate=banded)
            if need_w:
                v = _input_tiles(x[n0:n1, :, 2 * i0: 2 * i1 + 2], i1 - i0, tw).view(16, C, -1)
                du = torch.bmm(dm, v.transpose(1, 2)) if du is None else du.baddbmm_(dm, v.transpose(1, 2))
        return dx, _weight_tiles_adjoint(du) if du is not None else None


# torch.compile does not trace into this (its functionalization trips over the out= writes into
# views): under train.compile=on a Winograd convolution is a graph break, runs eagerly, and the
# ops between convolutions (norm, padding, activations) are still compiled and fused.
@torch.compiler.disable
def winograd_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """`F.conv2d(x, weight, bias)` (3×3, stride 1, no padding, one group) by Winograd F(2×2, 3×3).

    x: `(N, C, H, W)` fp32, H, W ≥ 3; weight `(K, C, 3, 3)`; returns `(N, K, H-2, W-2)`. Odd output
    sizes are handled by a zero row/column that is cropped again."""
    if x.dim() != 4 or weight.shape[2:] != (3, 3):
        raise ValueError(f"winograd_conv2d needs a 4-d input and 3×3 filters, got {tuple(x.shape)} and "
                         f"{tuple(weight.shape)}")
    H, W = x.shape[2], x.shape[3]
    extra_h, extra_w = H % 2, W % 2          # output H-2 must be even: one zero row at the end
    if extra_h or extra_w:
        x = F.pad(x, (0, extra_w, 0, extra_h))
    y = _WinogradConv.apply(x, weight)
    if extra_h or extra_w:
        y = y[:, :, : H - 2, : W - 2]
    if bias is not None:
        y = y + bias.view(1, -1, 1, 1)
    return y


#: Narrower convolutions stay direct: the transforms cost in proportion to the channels, the
#: products to their square, so Winograd pays only on wide layers. Measured (forward + both
#: backwards, one AVX2 core, `benchmarks/winograd_layers.py`, BENCHMARKS.md): 256→256 1.3–1.9×
#: faster; 128→128 0.8–1.3×; 64→64 and narrower 0.45–0.8×.
MIN_CHANNELS = 256


def eligible(module: nn.Module, min_channels: int = MIN_CHANNELS) -> bool:
    """True for a plain `nn.Conv2d` that Winograd F(2×2, 3×3) computes and that is wide enough to
    gain from it: 3×3, stride 1, no dilation, one group, at least `min_channels` input and output
    channels (parametrized convolutions, e.g. spectral norm, are left alone)."""
    return (type(module) in (nn.Conv2d, WinogradConv2d) and module.kernel_size == (3, 3)
            and module.stride == (1, 1) and module.dilation == (1, 1) and module.groups == 1
            and min(module.in_channels, module.out_channels) >= min_channels)


class WinogradConv2d(nn.Conv2d):
    """An `nn.Conv2d` (same parameters, same state-dict keys) that runs fp32 CPU inputs through
    `winograd_conv2d`; anything else (CUDA, bf16/fp16, autocast) takes the direct convolution.
    Made by `set_conv_algorithm`, not constructed directly."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (x.device.type != "cpu" or x.dtype != torch.float32 or self.weight.dtype != torch.float32
                or torch.is_autocast_enabled("cpu") or x.dim() != 4):
            return super().forward(x)
        pad = self._reversed_padding_repeated_twice  # also set for padding="same"/"valid"
        if any(pad):
            x = F.pad(x, pad, mode="constant" if self.padding_mode == "zeros" else self.padding_mode)
        return winograd_conv2d(x, self.weight, self.bias)


def set_conv_algorithm(net: nn.Module, algorithm: str, min_channels: int = MIN_CHANNELS) -> int:
    """Switch every eligible convolution of `net` (see `eligible`) to `algorithm` ("winograd" or
    "direct") in place; returns how many were switched. Parameters, hooks and checkpoint keys are
    untouched: only the class of each module changes, between `nn.Conv2d` and its subclass
    `WinogradConv2d`. "direct" switches every `WinogradConv2d` back, whatever its width."""
    if algorithm not in ("winograd", "direct"):
        raise ValueError(f"unknown convolution algorithm {algorithm!r}; use winograd or direct")
    target = WinogradConv2d if algorithm == "winograd" else nn.Conv2d
    count = 0
    for module in net.modules():
        if eligible(module, min_channels if algorithm == "winograd" else 0) and type(module) is not target:
            module.__class__ = target
            count += 1
    return count
