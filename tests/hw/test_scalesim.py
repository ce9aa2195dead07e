"""The systolic-array model against SCALE-Sim itself (the ``scalesim`` package, run here): its
compute model's cycles (the rows of its demand matrices, one per cycle) for several layer shapes,
array sizes and all three dataflows. Skipped when scalesim is not installed (``pip install
hwq[scalesim]``)."""
import pytest

from hwq.hw import map
from hwq.workloads.builder import single

from .scalesim_config import CONFIG

scalesim = pytest.importorskip("scalesim")



def scalesim_cycles(tmp_path, rows, cols, dataflow, h, kernel, c, k, stride):
    """SCALE-Sim's compute cycles of one conv layer on an (already padded) h x h input."""
    from scalesim.layout_utils import layouts
    from scalesim.scale_config import scale_config
    from scalesim.single_layer_sim import single_layer_sim
    from scalesim.topology_utils import topologies
    cfg = tmp_path / "a.cfg"
    cfg.write_text(CONFIG.format(rows=rows, cols=cols, dataflow=dataflow))
    topo = tmp_path / "t.csv"
    topo.write_text("Layer, IFMAP H, IFMAP W, Filter H, Filter W, Channels, Num Filter, Strides,\n"
                    f"L, {h}, {h}, {kernel}, {kernel}, {c}, {k}, {stride},\n")
    conf = scale_config()
    conf.read_conf_file(str(cfg))
    t, lay = topologies(), layouts()
    t.load_arrays(topofile=str(topo))
    lay.load_arrays(layoutfile=str(topo))
    sim = single_layer_sim()
    sim.set_params(layer_id=0, config_obj=conf, topology_obj=t, layout_obj=lay, verbose=False)
    _, ifm = sim.op_mat_obj.get_ifmap_matrix()
    _, flt = sim.op_mat_obj.get_filter_matrix()
    _, ofm = sim.op_mat_obj.get_ofmap_matrix()
    extra = {}
    if dataflow == "ws":
        extra = dict(sparsity_ratio_N=sim.sparsity_ratio_N, sparsity_ratio_M=sim.sparsity_ratio_M,
                     ifmap_op_mat_original=sim.op_mat_obj.ifmap_addr_matrix_original,
                     sparsity_filter_array=sim.op_mat_obj.sparse_filter_array)
    sim.compute_system.set_params(config_obj=conf, ifmap_op_mat=ifm, filter_op_mat=flt,
                                  ofmap_op_mat=ofm, **extra)
    ifmap_demand, _, _ = sim.compute_system.get_demand_matrices()
    return ifmap_demand.shape[0]


SHAPES = [  # (c, k, hw, kernel, stride, pad)
    (64, 64, 8, 1, 1, 0),      # the M = N = K = 64 GEMM
    (3, 16, 16, 3, 1, 1),      # a first layer: K = 27 leaves rows idle
    (32, 48, 10, 3, 2, 1),     # strided, N not a multiple of the array
    (100, 10, 4, 1, 1, 0),     # 1x1, few filters
]


@pytest.mark.parametrize("dataflow", ["ws", "os", "is"])
@pytest.mark.parametrize("rows,cols", [(8, 8), (16, 8), (32, 32)])
def test_systolic_cycles_equal_scalesim(tmp_path, dataflow, rows, cols):
    for c, k, hw, kernel, stride, pad in SHAPES:
        p = single(c=c, k=k, hw=hw, kernel=kernel, stride=stride, pad=pad, a_bits=8, w_bits=8)
        ours = map(p, f"systolic_{dataflow}", rows=rows, cols=cols).layers[0].cycles
        # SCALE-Sim's output size is ceil((H - R + S) / S) where PyTorch's is
        # floor((H + 2p - R) / S) + 1: give it the input the layer's outputs really span
        o = p[0].out_shape[1]
        span = (o - 1) * stride + kernel
        ref = scalesim_cycles(tmp_path, rows, cols, dataflow, span, kernel, c, k, stride)
        assert ours == ref, (dataflow, rows, cols, c, k, hw, kernel, stride)
