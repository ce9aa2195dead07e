"""hwq.hw.cost's off-chip input count: the input pixels a convolution's windows read
(``touched_rows`` / ``touched_inputs``), against PyTorch's own convolution (the pixels whose
gradient is non-zero), against SCALE-Sim's im2col addresses, and by hand on ResNet-50's
downsampling shortcut, whose DRAM bits are worked out below."""
import importlib.util
import itertools

import pytest
import torch

from hwq import workloads
from hwq.hw import map
from hwq.hw.cost import touched_inputs, touched_rows
from hwq.profile import LayerProfile
from hwq.workloads.builder import single

from .scalesim_config import CONFIG


def _read_by_torch(c, h, w, kernel, stride, pad, dilation=(1, 1)):
    """Input elements that F.conv2d reads: those with a non-zero gradient of the sum of a conv
    with all-one weights (float64; every tap of every window adds 1 to its input's gradient)."""
    x = torch.zeros(1, c, h, w, dtype=torch.float64, requires_grad=True)
    wt = torch.ones(1, c, *kernel, dtype=torch.float64)
    y = torch.nn.functional.conv2d(x, wt, stride=stride, padding=pad, dilation=dilation)
    y.sum().backward()
    return int((x.grad != 0).sum()), tuple(y.shape[2:])


def test_touched_rows_equal_torch_for_every_small_geometry():
    n = 0
    for size, k, s, p in itertools.product(range(1, 12), range(1, 6), range(1, 6), range(0, 3)):
        if size + 2 * p < k:
            continue
        ref, (out, _) = _read_by_torch(1, size, 1, (k, 1), (s, 1), (p, 0))
        assert touched_rows(size, k, s, p, out) == ref, (size, k, s, p)
        n += 1
    assert n > 700


def test_touched_inputs_by_hand():
    # ResNet-50's first downsampling shortcut: 1 x 1, stride 2, 256 x 56 x 56 -> 512 x 28 x 28:
    # rows and columns 0, 2, ..., 54 are read, a quarter of the input
    p = workloads.build("resnet50", w_bits=8, a_bits=8)
    short = p["layer2.0.downsample.0"]
    assert touched_inputs(short) == 256 * 28 * 28 == short.inputs // 4
    # its 3 x 3 stride-2 neighbour (pad 1) reaches rows -1 .. 55: every pixel
    three = p["layer2.0.conv2"]
    assert touched_inputs(three) == three.inputs == 128 * 56 * 56
    # VGG-M's conv1, 7 x 7 stride 2 without padding on 224: 109 windows reach row 2 * 108 + 6 =
    # 222, so row and column 223 are never read
    vgg = workloads.build("vgg_m")["conv1"]
    assert vgg.out_shape[1:] == (109, 109)
    assert touched_inputs(vgg) == 3 * 223 * 223
    # a 2 x 2 kernel at stride 3 (pad 1) on 10 rows: windows at -1..0, 2..3, 5..6, 8..9 read
    # rows 0, 2, 3, 5, 6, 8, 9 (7 of 10), per axis
    (gap,) = single(c=4, k=4, hw=10, kernel=2, stride=3, pad=1).layers
    assert gap.out_shape[1:] == (4, 4)
    assert touched_inputs(gap) == 4 * 7 * 7
    # an FC layer reads all of its input
    fc = p["fc"]
    assert touched_inputs(fc) == fc.inputs == 2048


@pytest.mark.parametrize("c,h,w,kernel,stride,pad", [
    (3, 17, 16, (1, 1), (2, 2), (0, 0)),
    (2, 15, 9, (3, 1), (2, 3), (1, 0)),
    (5, 12, 12, (2, 2), (3, 3), (1, 1)),
    (1, 20, 20, (7, 7), (4, 4), (3, 3)),
    (4, 9, 11, (1, 3), (3, 2), (0, 1)),
])
def test_touched_inputs_equal_torch(c, h, w, kernel, stride, pad):
    ref, (ho, wo) = _read_by_torch(c, h, w, kernel, stride, pad)
    kh, kw = kernel
    layer = LayerProfile(name="L", kind="conv", in_shape=(c, h, w), out_shape=(1, ho, wo),
                         kernel=kernel, stride=stride, padding=pad, macs=ho * wo * c * kh * kw,
                         weights=c * kh * kw)
    layer.validate()
    assert touched_inputs(layer) == ref


def test_a_shape_the_geometry_does_not_give_is_read_whole():
    # a dilated conv written down without its dilation: 3 x 3, dilation 2, stride 2, pad 2 on
    # 16 x 16 reads only the even rows and columns, but its 8 x 8 output does not follow from
    # kernel 3 / stride 2 / pad 2 (that gives 9 x 9), so the count falls back to the whole input
    # (an overcount, never an undercount); with its dilation recorded, the count is exact
    ref, out = _read_by_torch(2, 16, 16, (3, 3), (2, 2), (2, 2), dilation=(2, 2))
    assert out == (8, 8) and ref == 2 * 8 * 8
    layer = LayerProfile(name="dil", kind="conv", in_shape=(2, 16, 16), out_shape=(1, 8, 8),
                         kernel=(3, 3), stride=(2, 2), padding=(2, 2), macs=8 * 8 * 2 * 9,
                         weights=2 * 9)
    assert touched_inputs(layer) == layer.inputs == 2 * 16 * 16
    layer.dilation = (2, 2)
    layer.validate()
    assert touched_inputs(layer) == ref


def test_dilated_touched_rows_equal_torch_for_every_small_geometry():
    n = 0
    for size, k, s, p, d in itertools.product(range(1, 14), range(2, 5), range(1, 5), range(0, 4),
                                              range(2, 4)):
        if size + 2 * p < d * (k - 1) + 1:
            continue
        ref, (out, _) = _read_by_torch(1, size, 1, (k, 1), (s, 1), (p, 0), dilation=(d, 1))
        assert touched_rows(size, k, s, p, out, d) == ref, (size, k, s, p, d)
        n += 1
    assert n > 800


def test_profiled_dilated_conv_records_its_dilation_and_reads_what_torch_reads():
    from hwq.profile import Profile, profile
    conv = torch.nn.Conv2d(3, 4, 3, stride=(2, 2), padding=(2, 1), dilation=(2, 2), bias=False)
    model = torch.nn.Sequential(conv, torch.nn.Flatten())
    p = profile(model, torch.randn(1, 3, 16, 15))
    (layer,) = p.layers
    assert layer.dilation == (2, 2)
    ref, out = _read_by_torch(3, 16, 15, (3, 3), (2, 2), (2, 1), dilation=(2, 2))
    assert layer.out_shape[1:] == out
    assert touched_inputs(layer) == ref < layer.inputs
    back = Profile.from_dict(p.to_dict())
    assert back.layers[0].dilation == (2, 2) and touched_inputs(back.layers[0]) == ref
    # an undilated layer writes no dilation, as files of earlier versions did
    plain = profile(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten()),
                    torch.randn(1, 3, 8, 8))
    assert "dilation" not in plain.to_dict()["layers"][0]
    assert Profile.from_dict(plain.to_dict()).layers[0].dilation == (1, 1)


def test_bad_dilation_is_refused_by_name():
    from hwq.profile import ProfileError
    layer = LayerProfile(name="L", kind="conv", in_shape=(2, 8, 8), out_shape=(1, 6, 6),
                         kernel=(3, 3), macs=6 * 6 * 2 * 9, weights=2 * 9, dilation=(0, 1))
    with pytest.raises(ProfileError, match="dilation"):
        layer.validate()
    fc = LayerProfile(name="F", kind="fc", in_shape=(8,), out_shape=(2,), macs=16, weights=16,
                      dilation=(2, 2))
    with pytest.raises(ProfileError, match="dilation"):
        fc.validate()


def test_dram_bits_of_the_downsampling_shortcut_by_hand():
    """systolic_ws (batch 1, 8-bit storage): weights + the quarter of the input read + output."""
    p = workloads.build("resnet50", w_bits=8, a_bits=8)
    r = map(p, "systolic_ws")
    got = r["layer2.0.downsample.0"]
    weights, read, out = 512 * 256, 256 * 28 * 28, 512 * 28 * 28
    assert got.offchip_bits == (weights + read + out) * 8
    # the footprint keeps the whole input (the tensor the previous layer leaves on chip)
    assert got.footprint_bits == (weights + 256 * 56 * 56) * 8
    # a stride-1 layer is unchanged: weights + its whole input + output
    one = r["layer1.0.conv1"]
    assert one.offchip_bits == (64 * 64 + 64 * 56 * 56 + 64 * 56 * 56) * 8


needs_scalesim = pytest.mark.skipif(importlib.util.find_spec("scalesim") is None,
                                    reason="SCALE-Sim is not installed (pip install hwq[scalesim])")


def _scalesim_ifmap_addresses(tmp_path, h, kernel, c, stride):
    """The distinct input addresses in SCALE-Sim's im2col operand matrix of one conv layer on an
    h x h input without padding (SCALE-Sim fetches these from DRAM)."""
    from scalesim.layout_utils import layouts
    from scalesim.scale_config import scale_config
    from scalesim.single_layer_sim import single_layer_sim
    from scalesim.topology_utils import topologies
    cfg = tmp_path / "a.cfg"
    cfg.write_text(CONFIG.format(rows=8, cols=8, dataflow="ws"))
    topo = tmp_path / "t.csv"
    topo.write_text("Layer, IFMAP H, IFMAP W, Filter H, Filter W, Channels, Num Filter, Strides,\n"
                    f"L, {h}, {h}, {kernel}, {kernel}, {c}, 8, {stride},\n")
    conf = scale_config()
    conf.read_conf_file(str(cfg))
    t, lay = topologies(), layouts()
    t.load_arrays(topofile=str(topo))
    lay.load_arrays(layoutfile=str(topo))
    sim = single_layer_sim()
    sim.set_params(layer_id=0, config_obj=conf, topology_obj=t, layout_obj=lay, verbose=False)
    _, ifm = sim.op_mat_obj.get_ifmap_matrix()
    return len(set(int(a) for a in ifm.ravel() if a >= 0))


@needs_scalesim
@pytest.mark.parametrize("c,hw,kernel,stride", [
    (8, 14, 1, 2),   # ResNet's shortcut, small: a quarter
    (4, 12, 2, 3),   # kernel < stride: gaps of one row and column
    (4, 11, 3, 2),   # kernel >= stride: every pixel the windows span
    (2, 13, 1, 3),   # a ninth
])
def test_touched_inputs_equal_scalesim_addresses(tmp_path, c, hw, kernel, stride):
    p = single(c=c, k=8, hw=hw, kernel=kernel, stride=stride, pad=0)
    # SCALE-Sim's output size is ceil((H - R + S) / S), PyTorch's floor((H - R) / S) + 1: give
    # it the rows the layer's outputs span (those beyond are read by neither)
    o = p[0].out_shape[1]
    span = (o - 1) * stride + kernel
    assert touched_inputs(p[0]) == _scalesim_ifmap_addresses(tmp_path, span, kernel, c, stride)
