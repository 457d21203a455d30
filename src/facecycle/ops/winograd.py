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
`(K, C) @ (C, N·th·tw)` matrix product (one `bmm` for all 16), and every transform is a handful of
strided elementwise ops written straight into its output (`out=`) — no autograd graph of slices.

Ground-level: imports only torch.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["winograd_conv2d", "WinogradConv2d", "set_conv_algorithm", "eligible"]


def _taps(t: torch.Tensor, dim: int, count: int) -> list[torch.Tensor]:
    """The 4 strided views `t[..., r : r + 2·count - 1 : 2, ...]` (r = 0..3) along `dim`: tap r of
    every tile, tiles of 4 at stride 2."""
    index: list[Any] = [slice(None)] * t.dim()
    views = []
    for r in range(4):
        index[dim] = slice(r, r + 2 * count - 1, 2)
        views.append(t[tuple(index)])
    return views


def _input_tiles(x: torch.Tensor, th: int, tw: int) -> torch.Tensor:
    """B^T d B for every 4×4 tile of `x` `(N, C, 2·th+2, 2·tw+2)` -> `(4, 4, C, N, th, tw)`.

    B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]."""
    xt = x.transpose(0, 1)                                           # (C, N, H, W) view
    C, N, H, _ = xt.shape
    cols = x.new_empty((4, C, N, H, tw))
    d0, d1, d2, d3 = _taps(xt, 3, tw)
    torch.sub(d0, d2, out=cols[0])
    torch.add(d1, d2, out=cols[1])
    torch.sub(d2, d1, out=cols[2])
    torch.sub(d1, d3, out=cols[3])
    v = x.new_empty((4, 4, C, N, th, tw))
    for b in range(4):
        r0, r1, r2, r3 = _taps(cols[b], 2, th)
        torch.sub(r0, r2, out=v[0, b])
        torch.add(r1, r2, out=v[1, b])
        torch.sub(r2, r1, out=v[2, b])
        torch.sub(r1, r3, out=v[3, b])
    return v


def _input_tiles_adjoint(dv: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """The adjoint of `_input_tiles`: `(4, 4, C, N, th, tw)` -> gradient `(N, C, H, W)`
    (overlapping tiles add up)."""
    _, _, C, N, th, tw = dv.shape
    H, W = shape[2], shape[3]
    # Columns first: tile column b contributes B^T[b, r] to tap r; taps 2 and 0 of neighbours overlap.
    cols = dv.new_zeros((4, C, N, th, W))
    for a in range(4):
        c0, c1, c2, c3 = _taps(cols[a], 3, tw)
        g0, g1, g2, g3 = dv[a].unbind(0)
        c0.add_(g0)
        c1.add_(g1).sub_(g2).add_(g3)
        c2.add_(g1).add_(g2).sub_(g0)
        c3.sub_(g3)
    dx = dv.new_zeros(shape)
    dxt = dx.transpose(0, 1)                                         # (C, N, H, W) view
    r0, r1, r2, r3 = _taps(dxt, 2, th)
    r0.add_(cols[0])
    r1.add_(cols[1]).sub_(cols[2]).add_(cols[3])
    r2.add_(cols[1]).add_(cols[2]).sub_(cols[0])
    r3.sub_(cols[3])
    assert dx.shape[2] == H and dx.shape[3] == W
    return dx


def _weight_tiles(w: torch.Tensor) -> torch.Tensor:
    """G g G^T for every filter `(K, C, 3, 3)` -> `(16, K, C)`.

    G = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]]."""
    K, C = w.shape[:2]
    rows = w.new_empty((4, K, C, 3))
    w0, w1, w2 = w[:, :, 0], w[:, :, 1], w[:, :, 2]
    rows[0].copy_(w0)
    torch.add(w0, w2, out=rows[1]).mul_(0.5)
    rows[2].copy_(rows[1])
    rows[1].add_(w1, alpha=0.5)
    rows[2].sub_(w1, alpha=0.5)
    rows[3].copy_(w2)
    u = w.new_empty((4, 4, K, C))
    for a in range(4):
        q0, q1, q2 = rows[a].unbind(-1)
        u[a, 0].copy_(q0)
        torch.add(q0, q2, out=u[a, 1]).mul_(0.5)
        u[a, 2].copy_(u[a, 1])
        u[a, 1].add_(q1, alpha=0.5)
        u[a, 2].sub_(q1, alpha=0.5)
        u[a, 3].copy_(q2)
    return u.view(16, K, C)


def _weight_tiles_adjoint(du: torch.Tensor) -> torch.Tensor:
    """The adjoint of `_weight_tiles`: `(16, K, C)` -> gradient `(K, C, 3, 3)`."""
    _, K, C = du.shape
    du = du.view(4, 4, K, C)
    # G^T columns: tap 0 <- (1, 1/2, 1/2, 0), tap 1 <- (0, 1/2, -1/2, 0), tap 2 <- (0, 1/2, 1/2, 1).
    half_sum = (du[:, 1] + du[:, 2]).mul_(0.5)                       # (4, K, C)
    half_diff = (du[:, 1] - du[:, 2]).mul_(0.5)
    cols = du.new_empty((4, K, C, 3))
    torch.add(du[:, 0], half_sum, out=cols[..., 0])
    cols[..., 1].copy_(half_diff)
    torch.add(du[:, 3], half_sum, out=cols[..., 2])
    dw = du.new_empty((K, C, 3, 3))
    half_sum = (cols[1] + cols[2]).mul_(0.5)                         # (K, C, 3)
    torch.add(cols[0], half_sum, out=dw[:, :, 0])
    torch.sub(cols[1], cols[2], out=dw[:, :, 1]).mul_(0.5)
    torch.add(cols[3], half_sum, out=dw[:, :, 2])
    return dw


def _output_untile(m: torch.Tensor, out: torch.Tensor) -> None:
    """A^T m A for every tile, `(4, 4, K, N, th, tw)` -> `out` `(N, K, 2·th, 2·tw)` (written in place).

    A^T = [[1, 1, 1, 0], [0, 1, -1, -1]]."""
    _, _, K, N, th, tw = m.shape
    cols = m.new_empty((4, 2, K, N, th, tw))
    for a in range(4):
        torch.add(m[a, 0], m[a, 1], out=cols[a, 0]).add_(m[a, 2])
        torch.sub(m[a, 1], m[a, 2], out=cols[a, 1]).sub_(m[a, 3])
    # out[n, k, 2i + a, 2j + b] as an (a, b, K, N, th, tw) view.
    blocks = out.view(N, K, th, 2, tw, 2).permute(3, 5, 1, 0, 2, 4)
    for b in range(2):
        torch.add(cols[0, b], cols[1, b], out=blocks[0, b]).add_(cols[2, b])
        torch.sub(cols[1, b], cols[2, b], out=blocks[1, b]).sub_(cols[3, b])


def _output_untile_adjoint(dy: torch.Tensor) -> torch.Tensor:
    """The adjoint of `_output_untile`: gradient `(N, K, 2·th, 2·tw)` -> `(4, 4, K, N, th, tw)`."""
    N, K, H2, W2 = dy.shape
    th, tw = H2 // 2, W2 // 2
    blocks = dy.contiguous().view(N, K, th, 2, tw, 2).permute(3, 5, 1, 0, 2, 4)
    # A columns: tap 0 <- (1, 0), tap 1 <- (1, 1), tap 2 <- (1, -1), tap 3 <- (0, -1).
    rows = dy.new_empty((4, 2, K, N, th, tw))
    rows[0].copy_(blocks[0])
    torch.add(blocks[0], blocks[1], out=rows[1])
    torch.sub(blocks[0], blocks[1], out=rows[2])
    torch.neg(blocks[1], out=rows[3])
    dm = dy.new_empty((4, 4, K, N, th, tw))
    dm[:, 0].copy_(rows[:, 0])
    torch.add(rows[:, 0], rows[:, 1], out=dm[:, 1])
    torch.sub(rows[:, 0], rows[:, 1], out=dm[:, 2])
    torch.neg(rows[:, 1], out=dm[:, 3])
    return dm


class _WinogradConv(torch.autograd.Function):
    """Valid (unpadded) 3×3 stride-1 convolution of `x` `(N, C, 2·th+2, 2·tw+2)` with `weight`
    `(K, C, 3, 3)` -> `(N, K, 2·th, 2·tw)`, with its own backward."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        N, C, H, W = x.shape
        K = weight.shape[0]
        th, tw = (H - 2) // 2, (W - 2) // 2
        v = _input_tiles(x, th, tw).view(16, C, N * th * tw)
        u = _weight_tiles(weight)
        m = torch.bmm(u, v).view(4, 4, K, N, th, tw)
        y = x.new_empty((N, K, 2 * th, 2 * tw))
        _output_untile(m, y)
        ctx.save_for_backward(u, v)
        ctx.input_shape = x.shape
        ctx.needs = ctx.needs_input_grad
        return y

    @staticmethod
    def backward(ctx: Any, dy: torch.Tensor) -> tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
        u, v = ctx.saved_tensors
        K = u.shape[1]
        dm = _output_untile_adjoint(dy).view(16, K, -1)
        dx = dw = None
        if ctx.needs[0]:
            dv = torch.bmm(u.transpose(1, 2), dm)                     # (16, C, N·th·tw)
            C, N = v.shape[1], ctx.input_shape[0]
            th, tw = (ctx.input_shape[2] - 2) // 2, (ctx.input_shape[3] - 2) // 2
            dx = _input_tiles_adjoint(dv.view(4, 4, C, N, th, tw), ctx.input_shape)
        if ctx.needs[1]:
            dw = _weight_tiles_adjoint(torch.bmm(dm, v.transpose(1, 2)))
        return dx, dw


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


def eligible(module: nn.Module) -> bool:
    """True for a plain `nn.Conv2d` that Winograd F(2×2, 3×3) computes: 3×3, stride 1, no dilation,
    one group (parametrized convolutions, e.g. spectral norm, are left alone)."""
    return (type(module) in (nn.Conv2d, WinogradConv2d) and module.kernel_size == (3, 3)
            and module.stride == (1, 1) and module.dilation == (1, 1) and module.groups == 1)


class WinogradConv2d(nn.Conv2d):
    """An `nn.Conv2d` (same parameters, same state-dict keys) that runs fp32 CPU inputs through
    `winograd_conv2d`; anything else (CUDA, bf16/fp16, autocast) takes the direct convolution.
    Made by `set_conv_algorithm`, not constructed directly."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (x.device.type != "cpu" or x.dtype != torch.float32 or self.weight.dtype != torch.float32
                or torch.is_autocast_enabled("cpu") or x.dim() != 4):
            return super().forward(x)
        if self.padding_mode != "zeros":
            x = F.pad(x, self._reversed_padding_repeated_twice, mode=self.padding_mode)
        elif any(self.padding):
            ph, pw = self.padding  # type: ignore[misc]
            x = F.pad(x, (pw, pw, ph, ph))
        return winograd_conv2d(x, self.weight, self.bias)


def set_conv_algorithm(net: nn.Module, algorithm: str) -> int:
    """Switch every eligible convolution of `net` to `algorithm` ("winograd" or "direct") in place;
    returns how many were switched. Parameters, hooks and checkpoint keys are untouched: only the
    class of each module changes, between `nn.Conv2d` and its subclass `WinogradConv2d`."""
    if algorithm not in ("winograd", "direct"):
        raise ValueError(f"unknown convolution algorithm {algorithm!r}; use winograd or direct")
    target = WinogradConv2d if algorithm == "winograd" else nn.Conv2d
    count = 0
    for module in net.modules():
        if eligible(module) and type(module) is not target:
            module.__class__ = target
            count += 1
    return count
