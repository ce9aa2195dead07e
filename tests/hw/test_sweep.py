"""hwq.sweep against independent references: hwq.map on every point of every design, a brute-force
Pareto front, a hand-worked systolic grid (SCALE-Sim's formula by hand), Latin-hypercube
stratification, infeasible points kept with their reason."""
import csv
import dataclasses
import io
import itertools
import json
import math

import numpy as np
import pytest

import hwq
from hwq.hw.sweep import METRICS, pareto, parse_target
from hwq.workloads.builder import Net, single


def small_net():
    """A small network with repeated layers (costed once each by the sweep), a strided conv, a
    grouped conv and an FC layer."""
    net = Net((16, 16, 16))
    net.conv("c1", 32, 3, pad=1).conv("c2", 32, 3, pad=1).conv("c3", 32, 3, pad=1)
    net.conv("c4", 64, 3, stride=2, pad=1).conv("dw", 64, 3, pad=1, groups=64)
    net.conv("c5", 64, 3, pad=1).conv("c6", 64, 3, pad=1)
    net.global_pool().fc("fc", 10)
    p = net.profile("small", (16, 16, 16), "test")
    for l in p.layers:
        l.w_bits, l.a_bits = 4, 8
    return p


def grid_for(arch):
    """Two values of up to two options of the design's search space (BitFusion: its buffers,
    one of them too small for any tile)."""
    if arch == "bitfusion":
        return {"wbuf_bytes": [64, 65536], "bandwidth_bits_per_cycle": [64, 192]}
    if arch == "finn":
        return {"pe": [4, 16], "simd": [8, 32]}
    space = hwq.hw.get(arch).config.search_space
    return {k: list(v[:2]) for k, v in list(space.items())[:2]}


@pytest.mark.parametrize("arch", list(hwq.hw.ARCHS))
def test_every_point_equals_hwq_map(arch):
    p = small_net()
    r = hwq.sweep(p, arch, grid_for(arch))
    assert r.points == math.prod(len(v) for v in grid_for(arch).values())
    feasible = 0
    for row in r.rows:
        if not row["feasible"]:
            assert row["reason"]
            continue
        feasible += 1
        t = hwq.map(p, arch, config=r.config(row)).total
        want = {"cycles": t.cycles, "seconds": t.seconds, "fps": t.fps, "latency_s": t.latency_s,
                "energy_pj": t.energy_pj.total, "compute_pj": t.energy_pj.compute,
                "onchip_pj": t.energy_pj.onchip, "offchip_pj": t.energy_pj.offchip,
                "area_mm2": t.area_mm2, "utilization": t.utilization,
                "stall_cycles": t.stall_cycles, "macs": t.macs,
                "edp": t.energy_pj.total * t.latency_s}
        for k, v in want.items():
            assert row[k] == v, (arch, row["point"], k)  # exactly: the same arithmetic
    assert feasible >= 2


def test_bitfusion_buffer_too_small_is_infeasible_not_dropped():
    r = hwq.sweep(small_net(), "bitfusion", {"wbuf_bytes": [64, 65536]})
    assert [row["feasible"] for row in r.rows] == [False, True]
    assert "fits the buffers" in r.rows[0]["reason"] and "wbuf_bytes=64" in r.rows[0]["reason"]
    assert math.isnan(r.rows[0]["fps"]) and not r.rows[0]["pareto"]


def test_refused_option_is_infeasible_with_the_reason():
    r = hwq.sweep(small_net(), "dadiannao", {"lanes": [0, 16], "tiles": [16]})
    assert len(r.rows) == 2
    assert not r.rows[0]["feasible"] and "lanes=0" in r.rows[0]["reason"]
    assert r.rows[1]["feasible"] and r.rows[1]["pareto"]


def brute_front(vals):
    n = len(vals)
    out = np.ones(n, dtype=bool)
    for i in range(n):
        if np.isnan(vals[i]).any():
            out[i] = False
            continue
        for j in range(n):
            if j != i and not np.isnan(vals[j]).any() and np.all(vals[j] <= vals[i]) \
                    and np.any(vals[j] < vals[i]):
                out[i] = False
                break
    return out


@pytest.mark.parametrize("m", [1, 2, 3, 4])
def test_pareto_equals_brute_force(m):
    rng = np.random.default_rng(m)
    vals = rng.integers(0, 6, size=(250, m)).astype(float)   # many ties and duplicates
    vals[::37, 0] = np.nan
    assert (pareto(vals) == brute_front(vals)).all()


def test_front_of_a_sweep_is_non_dominated_and_complete():
    grid = {"rows": [8, 16, 32, 64], "cols": [8, 16, 32, 64], "freq_hz": [3e8, 7e8]}
    r = hwq.sweep(small_net(), "systolic_os", grid, objectives=("latency_s", "energy_pj",
                                                                "area_mm2"))
    vals = np.array([[x["latency_s"], x["energy_pj"], x["area_mm2"]] for x in r.rows])
    assert [x["pareto"] for x in r.rows] == list(brute_front(vals))
    # maximised objectives are negated: fps up, area down
    r2 = hwq.sweep(small_net(), "systolic_os", grid, objectives=("fps", "area_mm2"))
    vals = np.array([[-x["fps"], x["area_mm2"]] for x in r2.rows])
    assert [x["pareto"] for x in r2.rows] == list(brute_front(vals))


def test_hand_worked_systolic_grid():
    # a 64 x 64 x 64 GEMM (1x1 conv, 8 x 8 pixels, 64 -> 64 channels) on a weight-stationary array:
    # (2R + C + M - 2) * ceil(K / R) * ceil(N / C) cycles (SCALE-Sim), area 331 mm^2 * R*C / 256^2
    p = single(c=64, k=64, hw=8, kernel=1, pad=0, w_bits=8, a_bits=8)
    r = hwq.sweep(p, "systolic_ws", {"rows": [16, 32], "cols": [16, 32]},
                  objectives=("latency_s", "area_mm2"))
    by = {(x["rows"], x["cols"]): x for x in r.rows}
    hand = {(16, 16): 110 * 4 * 4, (16, 32): 126 * 4 * 2, (32, 16): 142 * 2 * 4,
            (32, 32): 158 * 2 * 2}
    for rc, cycles in hand.items():
        assert by[rc]["cycles"] == cycles
        assert by[rc]["latency_s"] == pytest.approx(cycles / 700e6, rel=1e-12)
        assert by[rc]["area_mm2"] == pytest.approx(331 * rc[0] * rc[1] / 65536, rel=1e-12)
    # (32, 16) has (16, 32)'s area and is slower: the only point off the front
    assert {rc for rc, x in by.items() if x["pareto"]} == {(16, 16), (16, 32), (32, 32)}
    # the cheapest at >= 650,000 images/s: (16, 32) runs 700e6 / 1008 = 694,444
    assert (lambda x: (x["rows"], x["cols"]))(r.pick(fps=650000)) == (16, 32)
    assert (lambda x: (x["rows"], x["cols"]))(r.pick(area="3mm2")) == (16, 32)
    with pytest.raises(ValueError, match="best reached: fps 1.1"):
        r.pick(fps=2e6)
    # the front as a text table (hwq's text_table, every column right-aligned; the same bytes as
    # the sweep's own formatter gave before): fps = 700e6 / cycles, latency = cycles / 700 MHz,
    # area and utilization = 64^3 MACs / (cycles * R * C) as above, energy from the model
    assert r.table() == "\n".join([
        "systolic_ws on single conv: 4 points, 0 infeasible, 3 on the front of latency_s, area_mm2",
        "point  rows  cols          fps  latency_ms  energy_uJ  area_mm2  util",
        "---------------------------------------------------------------------",
        "    0    16    16    397,727.3       0.003       2.10      1.29  0.58",
        "    1    16    32    694,444.4       0.001       2.09      2.59  0.51",
        "    3    32    32  1,107,594.9       0.001       2.09      5.17  0.41"])


def test_samples():
    grid = {"rows": [8, 16, 32, 64, 128], "cols": [8, 16, 32, 64, 128], "freq_hz": [5e8, 7e8]}
    p = single(c=16, k=16, hw=8, w_bits=8, a_bits=8)
    full = hwq.sweep(p, "systolic_ws", grid)
    assert full.points == 50
    # numpy values are taken as the Python numbers they hold
    np_grid = hwq.sweep(p, "systolic_ws", {"rows": np.array([8, 16]), "freq_hz": np.array([5e8])})
    assert all(x["feasible"] for x in np_grid.rows) and type(np_grid.rows[0]["rows"]) is int
    rnd = hwq.sweep(p, "systolic_ws", grid, sample="random", n=12, seed=3)
    keys = [(x["rows"], x["cols"], x["freq_hz"]) for x in rnd.rows]
    assert len(keys) == len(set(keys)) == 12
    assert keys == [(x["rows"], x["cols"], x["freq_hz"]) for x in
                    hwq.sweep(p, "systolic_ws", grid, sample="random", n=12, seed=3).rows]
    # a Latin hypercube of 5 points on 5 values: each value of rows and of cols exactly once
    lhs = hwq.sweep(p, "systolic_ws", {"rows": grid["rows"], "cols": grid["cols"]},
                    sample="lhs", n=5, seed=1)
    assert sorted(x["rows"] for x in lhs.rows) == grid["rows"]
    assert sorted(x["cols"] for x in lhs.rows) == grid["cols"]
    # and a sampled point equals the full grid's same point
    for x in rnd.rows:
        same = [y for y in full.rows if (y["rows"], y["cols"], y["freq_hz"]) ==
                (x["rows"], x["cols"], x["freq_hz"])]
        assert same[0]["energy_pj"] == x["energy_pj"] and same[0]["cycles"] == x["cycles"]


def test_several_workloads_add_up():
    a = single(c=16, k=32, hw=8, w_bits=8, a_bits=8)
    b = single("fc", k=100, fc_in=512, w_bits=8, a_bits=8)
    b.name = "fc"
    r = hwq.sweep([a, b], "eyeriss", {"rows": [8, 16]})
    assert r.workloads == ["single conv", "fc"]
    for pt in (0, 1):
        rows = {x["workload"]: x for x in r.rows if x["point"] == pt}
        assert set(rows) == {"single conv", "fc", "all"}
        for k in ("latency_s", "energy_pj", "seconds", "macs"):
            assert rows["all"][k] == pytest.approx(rows["single conv"][k] + rows["fc"][k])
        assert rows["all"]["fps"] == pytest.approx(1 / rows["all"]["seconds"])
    assert r.front() == [x for x in r.rows if x["workload"] == "all" and x["pareto"]]
    # per-layer numbers of a point on either workload
    rep = r.report(1, "fc")
    assert rep.total.energy_pj.total == [x for x in r.rows if x["point"] == 1
                                         and x["workload"] == "fc"][0]["energy_pj"]
    with pytest.raises(ValueError, match="workload 'cnn'"):
        r.report(0, "cnn")


def test_energy_fields_and_files(tmp_path):
    p = single(c=16, k=16, hw=8, w_bits=8, a_bits=8)
    r = hwq.sweep(p, "stripes", {"tiles": [4, 16], "energy.dram_pj_per_64b": [1300.0, 2600.0]})
    by = {(x["tiles"], x["energy.dram_pj_per_64b"]): x for x in r.rows}
    # twice the DRAM energy doubles the off-chip energy, nothing else
    assert by[(4, 2600.0)]["offchip_pj"] == pytest.approx(2 * by[(4, 1300.0)]["offchip_pj"])
    assert by[(4, 2600.0)]["compute_pj"] == by[(4, 1300.0)]["compute_pj"]
    r.to_csv(tmp_path / "s.csv")
    rows = list(csv.DictReader(io.StringIO((tmp_path / "s.csv").read_text())))
    assert len(rows) == 4 and float(rows[3]["energy_pj"]) == r.rows[3]["energy_pj"]
    d = json.loads(r.to_json())
    assert d["rows"][0]["energy.dram_pj_per_64b"] == 1300.0 and set(METRICS) <= set(d["rows"][0])


def test_base_config_under_every_point(tmp_path):
    p = single(c=16, k=16, hw=8, w_bits=16, a_bits=16)
    cfg = tmp_path / "hw.toml"
    cfg.write_text("[systolic_os]\nbits = 16\n[systolic_os.energy]\ndram_pj_per_64b = 2600.0\n")
    r = hwq.sweep(p, "systolic_os", {"rows": [8, 16]}, config=str(cfg))
    assert r.base == {"bits": 16, "energy": {**r.base["energy"], "dram_pj_per_64b": 2600.0}}
    for row in r.rows:
        t = hwq.map(p, "systolic_os", config=r.config(row)).total
        assert (t.cycles, t.energy_pj.total) == (row["cycles"], row["energy_pj"])
        # 16-bit PEs: one pass, where the default 8-bit PEs take 4
        assert t.cycles == hwq.map(p, "systolic_os", rows=row["rows"], bits=8).total.cycles / 4


def test_bad_inputs_are_named():
    p = single(c=16, k=16, hw=8)
    with pytest.raises(ValueError, match="grid key 'rowz'.*rows"):
        hwq.sweep(p, "systolic_ws", {"rowz": [1]})
    with pytest.raises(ValueError, match="grid\\['rows'\\] is empty"):
        hwq.sweep(p, "systolic_ws", {"rows": []})
    with pytest.raises(ValueError, match="objective 'speed'"):
        hwq.sweep(p, "systolic_ws", {"rows": [8]}, objectives=["speed"])
    with pytest.raises(ValueError, match="n=None"):
        hwq.sweep(p, "systolic_ws", {"rows": [8]}, sample="lhs")
    with pytest.raises(ValueError, match="sample='sobol'"):
        hwq.sweep(p, "systolic_ws", {"rows": [8]}, sample="sobol", n=3)
    with pytest.raises(ValueError, match="arch 'tpu'"):
        hwq.sweep(p, "tpu", {"rows": [8]})
    with pytest.raises(ValueError, match="grid=\\{\\}"):
        hwq.sweep(p, "systolic_ws", {})
    for bad in ("fps=-1", "fps=inf", "latency=3parsecs", "speed=1", "fps"):
        with pytest.raises(ValueError, match="target"):
            parse_target(bad)
    assert parse_target("latency=2ms") == ("latency_s", 2e-3)
    assert parse_target("energy=150uJ") == ("energy_pj", 150e6)
    assert parse_target("area=12") == ("area_mm2", 12.0)


def test_cli_writes_table_and_plots(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from hwq.cli import main
    out = tmp_path / "sw"
    prof = tmp_path / "p.json"
    small_net().to_json(prof)
    rc = main(["sweep", str(prof), "--arch", "systolic_ws", "--grid", "rows=32,64",
               "--grid", "cols=32,64", "--target", "fps=1000", "-o", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "chosen: point" in text and "on the front" in text
    for f in ("sweep.csv", "sweep.json", "pareto.png", "layers.png"):
        assert (out / f).stat().st_size > 0
    assert main(["sweep", str(prof), "--arch", "systolic_ws", "--grid", "rows"]) == 2
    assert "NAME=V1,V2" in capsys.readouterr().err


def _bitfusion_cases():
    """(layer geometry, config) pairs for the fast tiling search: small_net's layers and three of
    ResNet-50's, at several arrays, precisions (16 bits: temporal passes), batches, buffers (one
    too small for any tile) and bandwidths (memory-bound to compute-bound)."""
    from hwq.hw.bitfusion import BitFusionConfig
    rn = hwq.workloads.build("resnet50", w_bits=8, a_bits=8)
    layers = [l for l in small_net().layers if l.kind in ("conv", "fc")]
    layers += [rn.layers[0], rn.layers[2], rn.layers[-1]]
    configs = [BitFusionConfig(),
               BitFusionConfig(rows=8, cols=64, bandwidth_bits_per_cycle=16, batch=1),
               BitFusionConfig(rows=32, cols=16, bandwidth_bits_per_cycle=4096,
                               wbuf_bytes=8192, ibuf_bytes=131072, obuf_bytes=4096),
               BitFusionConfig(bandwidth_bits_per_cycle=64, ibuf_bytes=2048, batch=4)]
    for i, (layer, cfg) in enumerate(itertools.product(layers, configs)):
        bits = (i + i // len(configs)) % 4  # every config meets every precision pair
        first = layer is rn.layers[0]       # the network's input: im2col
        yield (dataclasses.replace(layer, w_bits=(2, 4, 8, 16)[bits], a_bits=(8, 4, 16, 2)[bits]),
               cfg, first)


def test_bitfusion_fast_search_equals_the_reference():
    """hwq.hw.bitfusion_tiles.search (each class of equivalent loop orders once, tilings pruned
    by a lower bound, walks shared across bandwidths) against search_reference (every tiling
    under all 120 orders, as the authors' simulator enumerates them): the same Tiled, bit for
    bit, or the same refusal. The sweep's BitFusion points are hwq.map's, which calls search."""
    from hwq.hw import bitfusion, bitfusion_tiles
    seen = 0
    for layer, cfg, first in _bitfusion_cases():
        a = bitfusion.search_args(layer, cfg, first)
        assert bitfusion_tiles.search.__wrapped__(*a) == bitfusion_tiles.search_reference(*a), (
            layer.name, cfg)
        seen += 1
    assert seen == 44
    # one layer at four bandwidths in turn: later searches reuse the walks of earlier ones
    bitfusion_tiles._walked.cache_clear()
    layer = hwq.workloads.build("resnet50", w_bits=8, a_bits=8).layers[2]
    for bw in (192, 16, 4096, 64):
        a = bitfusion.search_args(layer, bitfusion.BitFusionConfig(bandwidth_bits_per_cycle=bw),
                                  False)
        assert bitfusion_tiles.search.__wrapped__(*a) == bitfusion_tiles.search_reference(*a), bw
    assert bitfusion_tiles._walked.cache_info().hits == 3
    # a buffer no tile fits: both refuse
    a = bitfusion.search_args(small_net().layers[1], bitfusion.BitFusionConfig(wbuf_bytes=64),
                              False)
    for fn in (bitfusion_tiles.search.__wrapped__, bitfusion_tiles.search_reference):
        with pytest.raises(ValueError, match="fits the buffers"):
            fn(*a)


def test_several_designs_one_table_one_front():
    """hwq.sweep over three designs: each row equals hwq.map with its design and configuration,
    the grid keys go where they are named (DESIGN.FIELD to one design, other keys to all, a
    design given none sweeps its search space), the front over all designs' rows equals a brute
    force, and pick chooses across designs as a brute force does."""
    p = small_net()
    grid = {"systolic_ws.rows": [16, 64], "eyeriss.cols": [8, 16], "freq_hz": [5e8, 1e9]}
    r = hwq.sweep(p, "systolic_ws,eyeriss,stripes", grid)
    assert r.archs == ["systolic_ws", "eyeriss", "stripes"]
    by = {a: [row for row in r.rows if row["arch"] == a] for a in r.archs}
    space = hwq.hw.get("stripes").config.search_space
    assert len(by["systolic_ws"]) == len(by["eyeriss"]) == 4
    assert len(by["stripes"]) == 2 * math.prod(len(v) for v in space.values())
    assert [row["point"] for row in r.rows] == list(range(r.points))  # numbered across designs
    assert r.params[:2] == ["rows", "freq_hz"] and "cols" in r.params
    assert {row["cols"] for row in by["systolic_ws"]} == {None}  # not a parameter of that design
    assert {row["rows"] for row in by["eyeriss"]} == {None}
    for row in r.rows:
        t = hwq.map(p, row["arch"], config=r.config(row)).total
        assert (row["cycles"], row["energy_pj"], row["area_mm2"], row["fps"]) == (
            t.cycles, t.energy_pj.total, t.area_mm2, t.fps), row["point"]
    assert r.config(by["systolic_ws"][3]) == {"rows": 64, "freq_hz": 1e9}
    # one front over every design's points
    vals = np.array([[row[o] for o in r.objectives] for row in r.rows], dtype=float)
    assert [row["pareto"] for row in r.rows] == list(brute_front(vals))
    assert len({row["arch"] for row in r.front()}) >= 2
    fps = sorted(row["fps"] for row in r.rows)[len(r.rows) // 2]
    ok = [row for row in r.rows if row["fps"] >= fps]
    want = min(ok, key=lambda row: (row["area_mm2"], row["energy_pj"], row["latency_s"],
                                    row["point"]))
    assert r.pick(fps=fps) is want
    assert r.report(want).arch == want["arch"]
    text = r.to_csv()
    assert text.splitlines()[0].startswith("point,arch,workload,rows,freq_hz")
    assert json.loads(r.to_json())["archs"] == r.archs
    assert "arch" in r.table().splitlines()[1]


def test_several_designs_bad_inputs_are_named():
    p = small_net()
    with pytest.raises(ValueError, match="not swept"):
        hwq.sweep(p, "systolic_ws,eyeriss", {"stripes.tiles": [4]})
    with pytest.raises(ValueError, match="twice"):
        hwq.sweep(p, ["eyeriss", "eyeriss"])
    with pytest.raises(ValueError, match="nosuch"):
        hwq.sweep(p, "eyeriss,nosuch")
    with pytest.raises(ValueError, match="grid key 'lanes'"):  # a shared key one design lacks
        hwq.sweep(p, "systolic_ws,dadiannao", {"lanes": [16]})


def test_cli_several_designs(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from hwq.cli import main
    out = tmp_path / "sw"
    prof = tmp_path / "p.json"
    small_net().to_json(prof)
    rc = main(["sweep", str(prof), "--arch", "systolic_ws,eyeriss", "--grid",
               "systolic_ws.rows=16,32", "--grid", "eyeriss.rows=8,16", "-o", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "systolic_ws,eyeriss on small: 4 points" in text and "chosen: point" in text
    with open(out / "sweep.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["arch"], r["rows"]) for r in rows] == [
        ("systolic_ws", "16"), ("systolic_ws", "32"), ("eyeriss", "8"), ("eyeriss", "16")]
    for f in ("sweep.json", "pareto.png", "layers.png"):
        assert (out / f).stat().st_size > 0
    # no --grid: each design's own search space
    assert main(["sweep", str(prof), "--arch", "systolic_ws,diannao", "--no-plots"]) == 0
    n = sum(math.prod(len(v) for v in hwq.hw.get(a).config.search_space.values())
            for a in ("systolic_ws", "diannao"))
    assert f"systolic_ws,diannao on small: {n} points" in capsys.readouterr().out
