"""Winograd F(2×2, 3×3) convolution (issue 15): equal to the direct convolution to float rounding in
the output and both gradients (and exactly, in float64, by gradcheck), for the shapes the networks
use and the awkward ones (odd sizes, one channel, batches, padding modes); module switching keeps
parameters and checkpoint keys; anything but fp32 on the CPU runs direct."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from facecycle.ops.winograd import WinogradConv2d, eligible, set_conv_algorithm, winograd_conv2d


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).item()


@pytest.mark.parametrize("shape", [(1, 256, 256, 34, 34), (2, 5, 7, 9, 8), (3, 1, 4, 3, 3), (1, 16, 8, 7, 12),
                                   (4, 32, 16, 18, 18)])
def test_output_and_both_gradients_equal_the_direct_convolution(shape) -> None:
    N, C, K, H, W = shape
    g = torch.Generator().manual_seed(sum(shape))
    x = torch.randn(N, C, H, W, generator=g, requires_grad=True)
    weight = (torch.randn(K, C, 3, 3, generator=g) * 0.1).requires_grad_()
    bias = torch.randn(K, generator=g, requires_grad=True)
    direct = F.conv2d(x, weight, bias)
    fast = winograd_conv2d(x, weight, bias)
    assert fast.shape == direct.shape
    assert _relative(fast, direct) < 2e-5
    upstream = torch.randn(direct.shape, generator=g)
    for got, want in zip(torch.autograd.grad(fast, (x, weight, bias), upstream),
                         torch.autograd.grad(direct, (x, weight, bias), upstream)):
        assert got.shape == want.shape
        assert _relative(got, want) < 2e-5


def test_gradcheck_in_float64() -> None:
    """The hand-written backward is the exact adjoint of the forward (finite differences, float64)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 7, 6, dtype=torch.float64, generator=g, requires_grad=True)
    weight = torch.randn(4, 3, 3, 3, dtype=torch.float64, generator=g, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w: winograd_conv2d(x, w), (x, weight))


def test_only_the_gradients_asked_for_are_computed() -> None:
    x = torch.randn(1, 4, 6, 6)
    weight = torch.randn(5, 4, 3, 3, requires_grad=True)
    (grad_w,) = torch.autograd.grad(winograd_conv2d(x, weight).sum(), (weight,))
    assert torch.allclose(grad_w, torch.autograd.grad(F.conv2d(x, weight).sum(), (weight,))[0], atol=1e-4)


def test_bad_shapes_are_refused_with_the_shapes_named() -> None:
    with pytest.raises(ValueError, match=r"3×3 filters.*\(2, 2, 5, 5\)"):
        winograd_conv2d(torch.randn(1, 2, 8, 8), torch.randn(2, 2, 5, 5))


@pytest.mark.parametrize("padding, mode", [(0, "zeros"), (1, "zeros"), (1, "reflect"), (1, "replicate"),
                                           ((1, 0), "zeros"), ("same", "zeros"), ("same", "reflect"), ("valid", "zeros")])
def test_module_matches_conv2d_with_its_padding(padding, mode) -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(6, 5, 3, padding=padding, padding_mode=mode)
    x = torch.randn(2, 6, 11, 10)
    direct = conv(x)
    assert set_conv_algorithm(conv, "winograd") == 0  # too narrow to gain: stays direct
    assert set_conv_algorithm(conv, "winograd", min_channels=1) == 1
    assert type(conv) is WinogradConv2d
    assert _relative(conv(x), direct) < 2e-5


def test_switching_keeps_parameters_and_checkpoint_keys_and_leaves_other_layers_alone() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 3, stride=2),
                        nn.Conv2d(8, 8, 4), nn.Conv2d(8, 8, 7, padding=3), nn.Conv2d(8, 8, 3, dilation=2),
                        nn.Conv2d(8, 8, 3, groups=2), nn.ConvTranspose2d(8, 3, 3),
                        nn.utils.parametrizations.spectral_norm(nn.Conv2d(3, 3, 3)))
    keys = list(net.state_dict())
    weights = [p.data_ptr() for p in net.parameters()]
    assert [eligible(m, min_channels=1) for m in net] == [False, True, False, False, False, False, False, False,
                                                          False]
    assert not eligible(net[1]) and eligible(nn.Conv2d(256, 256, 3)) and not eligible(nn.Conv2d(256, 128, 3))
    assert set_conv_algorithm(net, "winograd", min_channels=1) == 1
    assert set_conv_algorithm(net, "winograd", min_channels=1) == 0  # already switched
    assert type(net[1]) is WinogradConv2d and type(net[2]) is nn.Conv2d
    assert list(net.state_dict()) == keys and [p.data_ptr() for p in net.parameters()] == weights
    assert set_conv_algorithm(net, "direct") == 1 and type(net[1]) is nn.Conv2d
    with pytest.raises(ValueError, match="winograd or direct"):
        set_conv_algorithm(net, "fft")


def test_anything_but_fp32_on_the_cpu_runs_the_direct_convolution() -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 4, 3, padding=1)
    set_conv_algorithm(conv, "winograd", min_channels=1)
    x = torch.randn(1, 4, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = conv(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(under_autocast, nn.Conv2d.forward(conv, x))
    conv64 = conv.double()
    assert torch.equal(conv64(x.double()), F.conv2d(x.double(), conv64.weight, conv64.bias, padding=1))


@pytest.mark.parametrize("chunk_tiles, shape", [(3, (3, 8, 6, 22, 12)), (7, (5, 4, 4, 10, 10)), (40, (6, 3, 5, 9, 14))])
def test_chunked_passes_over_samples_and_bands_of_rows_equal_one_pass(monkeypatch, chunk_tiles, shape) -> None:
    """Big inputs go through in chunks (several samples, or bands of tile rows whose input rows
    overlap): the output and the summed gradients are those of the direct convolution."""
    import facecycle.ops.winograd as winograd

    monkeypatch.setattr(winograd, "CHUNK_TILES", chunk_tiles)
    N, C, K, H, W = shape
    tw = (W - 1) // 2
    assert len(winograd._chunks(N, (H - 1) // 2, tw)) > 1
    g = torch.Generator().manual_seed(1)
    x = torch.randn(N, C, H, W, generator=g, requires_grad=True)
    weight = torch.randn(K, C, 3, 3, generator=g, requires_grad=True)
    direct, fast = F.conv2d(x, weight), winograd_conv2d(x, weight)
    assert _relative(fast, direct) < 2e-5
    upstream = torch.randn(direct.shape, generator=g)
    for got, want in zip(torch.autograd.grad(fast, (x, weight), upstream),
                         torch.autograd.grad(direct, (x, weight), upstream)):
        assert _relative(got, want) < 2e-5


def test_chunks_cover_every_tile_once() -> None:
    import facecycle.ops.winograd as winograd

    for N, th, tw in [(1, 16, 16), (8, 16, 16), (2, 64, 64), (3, 5, 700), (1, 1, 1)]:
        seen = torch.zeros(N, th, tw, dtype=torch.int64)
        for n0, n1, i0, i1 in winograd._chunks(N, th, tw):
            seen[n0:n1, i0:i1] += 1
        assert bool((seen == 1).all()), (N, th, tw)


@pytest.mark.slow
def test_torch_compile_runs_around_the_winograd_convolution() -> None:
    """Under torch.compile a Winograd convolution is a graph break (it runs eagerly); the compiled
    pieces around it and the gradients match eager (needs a C++ compiler)."""
    from facecycle.training.compile import cxx_compiler

    if cxx_compiler() is None:
        pytest.skip("no C++ compiler for torch.compile's CPU backend")
    torch.manual_seed(0)
    net = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(8, 8, 3), nn.InstanceNorm2d(8), nn.ReLU(),
                        nn.ReflectionPad2d(1), nn.Conv2d(8, 8, 3))
    x = torch.randn(2, 8, 16, 16)
    eager = net(x)
    eager.square().mean().backward()
    want = net[1].weight.grad.clone()
    net.zero_grad()
    assert set_conv_algorithm(net, "winograd", min_channels=1) == 2
    compiled = torch.compile(net)(x)
    compiled.square().mean().backward()
    assert torch.allclose(compiled, eager, atol=1e-5)
    assert torch.allclose(net[1].weight.grad, want, atol=1e-6, rtol=1e-4)
