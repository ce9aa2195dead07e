"""hwq.generate: the generated config round-trips through hwq map --config and meets its target;
the pick is the cheapest by brute force; FINN's folding obeys PE | MH, SIMD | MW, reaches the rate,
and never needs more lanes than FINN's own SetFolding (hand-worked case included)."""
import json
import math

import pytest

from hwq._io import tomllib  # tomli on Python 3.10

import hwq
from hwq.hw import finn_folding
from hwq.hw.finn import matrix
from hwq.hw.generate import toml_table
from hwq.hw.sweep import parse_target
from hwq.workloads.builder import single


def small():
    return single(c=32, k=64, hw=16, w_bits=8, a_bits=8)


def test_generated_config_round_trips_through_hwq_map(tmp_path, capsys):
    from hwq.cli import main
    rc = main(["generate", "resnet18", "--arch", "systolic_ws", "--target", "fps=150",
               "-o", str(tmp_path)])
    assert rc == 0
    toml = tmp_path / "config.toml"
    with open(toml, "rb") as f:
        assert set(tomllib.load(f)) == {"systolic_ws"}
    assert main(["map", "resnet18", "--arch", "systolic_ws", "--config", str(toml),
                 "--format", "json", "-o", str(tmp_path / "back.json")]) == 0
    back = json.loads((tmp_path / "back.json").read_text())[0]["total"]
    report = json.loads((tmp_path / "report.json").read_text())["total"]
    for k in ("fps", "latency_s", "cycles", "area_mm2"):
        assert back[k] == report[k]
    assert back["fps"] >= 150
    assert (tmp_path / "sweep.csv").exists() and (tmp_path / "report.txt").exists()


def test_pick_is_the_cheapest_meeting_the_target():
    p = small()
    grid = {"rows": [8, 16, 32, 64], "cols": [8, 16, 32, 64]}
    for target in ({"fps": 20000}, {"latency": "0.05ms"}, {"energy": "40uJ", "fps": 5000}):
        g = hwq.generate(p, "systolic_os", target, grid=grid)
        bounds = dict(parse_target(f"{k}={v}") for k, v in target.items())
        ok = [r for r in g.sweep.rows
              if all((r[c] >= b) if c == "fps" else (r[c] <= b) for c, b in bounds.items())]
        assert ok, target
        assert g.row["area_mm2"] == min(r["area_mm2"] for r in ok)
        t = hwq.map(p, "systolic_os", config=g.config).total
        assert t.fps == g.row["fps"] and t.area_mm2 == g.row["area_mm2"]
    # area as the target: the fastest within it
    g = hwq.generate(p, "systolic_os", area=5.2, grid=grid)
    ok = [r for r in g.sweep.rows if r["area_mm2"] <= 5.2]
    assert g.row["latency_s"] == min(r["latency_s"] for r in ok)


def test_unreachable_target_names_the_best():
    with pytest.raises(ValueError, match="meets fps >= 1e\\+09; the best reached: fps"):
        hwq.generate(small(), "eyeriss", fps=1e9)


def test_default_search_space_of_every_design():
    for name, arch in hwq.hw.ARCHS.items():
        space = arch.config.search_space
        if name == "finn":
            continue  # folded per layer instead
        assert space, name
        for k, values in space.items():
            assert k in arch.config.accepted(), (name, k)
            arch.default_config().replace(**{k: values[0]})  # accepted values


def test_finn_heuristic_hand_worked():
    # one FC layer MH = 64, MW = 27, binary weights, target 10 cycles (FINN: strictly fewer):
    # SIMD over 1, 3, 9, 27 never gets under 10 (64 * 27 / 27 = 64), so SIMD = 27; then PE over
    # 1, 2, 4, 8: 64 / 8 = 8 < 10 -> (PE, SIMD) = (8, 27), 216 lanes.
    p = single("fc", k=64, fc_in=27, w_bits=1, a_bits=1)
    f = finn_folding.set_folding(p, 10)["L"]
    assert (f.pe, f.simd, f.cycles) == (8, 27, 8)
    # within 9 cycles the fewest lanes are 64 * 27 / 9 = 192: PE 64 x SIMD 3
    b = finn_folding.balanced(p, 9)["L"]
    assert (b.pe, b.simd, b.cycles) == (64, 3, 9)
    # the weight stream cap: 2-bit weights, 36 bits -> SIMD stops at 9 (18 bits; 27 -> 54 > 36),
    # 64 * 3 = 192 cycles; then PE 16 gives 4 * 3 = 12 (not under 10), PE 32 gives 6
    p2 = single("fc", k=64, fc_in=27, w_bits=2, a_bits=2)
    f2 = finn_folding.set_folding(p2, 10)["L"]
    assert (f2.pe, f2.simd, f2.cycles) == (32, 9, 6)


@pytest.mark.parametrize("workload", ["finn_cnv", "finn_lfc"])
@pytest.mark.parametrize("fps", [500, 3000, 12000])
def test_finn_folding_obeys_rules_and_reaches_the_rate(tmp_path, workload, fps):
    p = hwq.workloads.build(workload)
    g = hwq.generate(p, "finn", fps=fps)
    for layer in p.layers:
        pe, simd = g.folding[layer.name]
        mh, mw = matrix(layer)
        assert mh % pe == 0 and mw % simd == 0, layer.name
    g.write(tmp_path)
    r = hwq.map(p, "finn", config=str(tmp_path / "config.toml"))
    assert r.total.fps >= fps and r.total.fps == g.row["fps"]
    assert g.sweep.report(g.row).total.area_mm2 == r.total.area_mm2 == g.row["area_mm2"]
    # the slowest layer sets the rate, and no layer is faster than its fewest lanes allow:
    # one fold fewer lanes (the next cheaper option) would miss the budget
    budget = math.floor(100e6 / fps)
    for layer in p.layers:
        opts = finn_folding.options(layer)
        chosen = [o for o in opts if (o.pe, o.simd) == tuple(g.folding[layer.name])]
        assert chosen and chosen[0].cycles <= budget
        i = opts.index(chosen[0])
        assert i == 0 or opts[i - 1].cycles > budget
    # FINN's own heuristic at the same rate never needs fewer lanes
    h = g.finn_heuristic
    if h["fps"] >= g.row["fps"]:
        assert h["hwq_lanes"] <= h["lanes"]
    js = json.loads((tmp_path / "folding.json").read_text())
    assert js["Defaults"] == {} and len(js) == len(p.layers) + 1
    assert [js[f"MVAU_hls_{i}"]["PE"] for i in range(len(p.layers))] == \
        [g.folding[l.name][0] for l in p.layers]


def test_finn_cnv_needs_fewer_lanes_than_setfolding():
    # CNV at 1,000 images/s: SetFolding raises SIMD first (MW = 27 in conv0: 3 -> 9 -> 27) and
    # overshoots; the balanced folding uses 29% fewer lane-bits at the same rate
    g = hwq.generate(hwq.workloads.build("finn_cnv"), "finn", fps=1000)
    h = g.finn_heuristic
    assert h["fps"] == pytest.approx(g.row["fps"])
    assert h["hwq_lanes"] < 0.8 * h["lanes"]


def test_toml_writer_quotes_keys_and_round_trips():
    d = {"freq_hz": 1e8, "proteus": True, "name": 'a "b"', "folding": {
        "layer1.0.conv1": [2, 9], "fc": [1, 1], "odd key": [3, 3]}, "energy": {"x": 1.5e-06}}
    text = toml_table("finn", d)
    back = tomllib.loads(text)["finn"]
    assert back == d


def test_generate_bad_inputs():
    with pytest.raises(ValueError, match="target 'speed=3'"):
        hwq.generate(small(), "eyeriss", speed=3)
    with pytest.raises(ValueError, match="grid given for finn"):
        hwq.generate(hwq.workloads.build("finn_lfc"), "finn", fps=1000, grid={"pe": [1]})
    with pytest.raises(ValueError, match="one profile"):
        hwq.generate([small(), small()], "eyeriss", fps=1)
    from hwq.cli import main
    assert main(["generate", "resnet18", "--arch", "eyeriss"]) == 2


@pytest.mark.parametrize("workload,published,setfolding,balanced", [
    ("finn_cnv", 2272, 2533, 2095), ("finn_lfc", 6272, 6272, 5888)])
def test_fewer_lanes_than_bnn_pynq_at_its_own_rate(workload, published, setfolding, balanced):
    # BNN-PYNQ's cnvW1A1 / lfcW1A1 foldings (config.h) run at their slowest layer's cycles;
    # at that budget the balanced folding needs fewer PE x SIMD lanes than the hand folding and
    # than FINN's SetFolding, with every weight stream within SetFolding's 36 bits
    from hwq.workloads.finn_bench import EXT_LATENCY, FOLDING
    p = hwq.workloads.build(workload)
    budget = max(EXT_LATENCY[workload].values())
    pub = {k: tuple(v) for k, v in FOLDING[workload].items()}
    assert finn_folding.lanes(p, pub) == published
    heur = finn_folding.set_folding(p, budget + 1)
    assert max(f.cycles for f in heur.values()) == budget
    assert finn_folding.lanes(p, heur) == setfolding
    bal = finn_folding.balanced(p, budget)
    assert max(f.cycles for f in bal.values()) == budget
    assert finn_folding.lanes(p, bal) == balanced
    assert all(l.w_bits * bal[l.name].simd <= 36 for l in p.layers)
    finn_folding.check(p, bal)
    # and hwq.map on it runs at BNN-PYNQ's rate
    r = hwq.map(p, "finn", folding={k: [f.pe, f.simd] for k, f in bal.items()})
    assert r.total.fps == pytest.approx(100e6 / budget)
