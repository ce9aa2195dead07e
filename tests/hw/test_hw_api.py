"""hwq.map's interface: names, configs from Python and TOML, energy table, report output."""
import csv
import io
import json

import pytest

import hwq
from hwq.hw import ARCHS, EnergyTable, map
from hwq.hw.stripes import StripesConfig

from hwq.workloads.builder import single as one_layer


def test_registry_and_unknown_names():
    for name in ("dadiannao", "diannao", "stripes", "dstripes", "loom", "tartan", "pragmatic",
                 "pragmatic_col", "proteus", "envision", "yodann", "finn", "shift", "bitfusion",
                 "systolic_ws", "systolic_os", "systolic_is"):
        assert name in ARCHS
    with pytest.raises(ValueError, match="accepted: dadiannao, diannao, stripes"):
        map(one_layer(), "tpu_v9")
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['tile'\]; accepted: .*'tiles'"):
        map(one_layer(), "stripes", tile=8)
    with pytest.raises(ValueError, match="dataflow='xs'"):
        map(one_layer(), "systolic_ws", dataflow="xs")
    with pytest.raises(ValueError, match="tiles=1.5 is not accepted"):
        map(one_layer(), "stripes", tiles=1.5)


def test_config_from_python_and_toml(tmp_path):
    p = one_layer(c=64, k=512, hw=16)
    base = map(p, "stripes").layers[0].cycles
    assert map(p, "stripes", tiles=8).layers[0].cycles == 2 * base
    assert map(p, "stripes", config=StripesConfig(tiles=8)).layers[0].cycles == 2 * base
    toml = tmp_path / "hw.toml"
    toml.write_text("[stripes]\ntiles = 8\n[stripes.energy]\ndram_pj_per_64b = 2600.0\n"
                    "[bitfusion]\nrows = 8\n")
    r = map(p, "stripes", config=toml)
    assert r.layers[0].cycles == 2 * base
    assert r.config["energy"]["dram_pj_per_64b"] == 2600.0
    cfg = StripesConfig.from_toml(toml, "stripes")
    assert cfg.tiles == 8 and cfg.energy.dram_pj_per_64b == 2600.0
    bad = tmp_path / "bad.toml"
    bad.write_text("[stripes]\ncolums = 8\n")
    with pytest.raises(ValueError, match="colums"):
        map(p, "stripes", config=bad)


def test_energy_table_scaling_and_replacement():
    t = EnergyTable()
    assert t.mult_pj(8, 8) == pytest.approx(0.2, rel=0.2)   # Horowitz: 8-bit mult 0.2 pJ
    assert t.add_pj(8) == pytest.approx(0.03, rel=0.2)      # 8-bit add 0.03 pJ
    assert t.mult_pj(32, 32) / t.mult_pj(8, 8) == 16         # quadratic
    assert t.add_pj(32) / t.add_pj(8) == 4                   # linear
    p = one_layer()
    e1 = map(p, "dadiannao").layers[0].energy_pj
    e2 = map(p, "dadiannao", energy=EnergyTable(dram_pj_per_64b=2600.0)).layers[0].energy_pj
    assert e2.offchip == pytest.approx(2 * e1.offchip) and e2.compute == e1.compute
    e3 = map(p, "dadiannao", offchip=False).layers[0]
    assert e3.energy_pj.offchip == 0 and e3.offchip_bits == 0
    with pytest.raises(ValueError, match="dram_pj_per_64b=-1"):
        EnergyTable(dram_pj_per_64b=-1)


def test_report_outputs(tmp_path):
    p = hwq.workloads.build("alexnet", a_bits=8)
    r = hwq.map(p, "stripes")
    assert r.total.macs == p.macs
    assert r.total.speedup == pytest.approx(
        sum(b.seconds for b in hwq.map(p, "dadiannao").layers) / r.total.seconds)
    text = r.table()
    assert "total" in text and "conv1" in text
    d = json.loads(r.to_json(tmp_path / "r.json"))
    assert d["total"]["energy_pj"]["total"] == pytest.approx(r.total.energy_pj.total)
    rows = list(csv.DictReader(io.StringIO(r.to_csv(tmp_path / "r.csv"))))
    assert len(rows) == len(p) + 1 and rows[-1]["layer"] == "total"
    assert float(rows[0]["cycles"]) == r.layers[0].cycles
    e = r.layers[0].energy_pj
    assert e.total == pytest.approx(e.compute + e.onchip + e.offchip)


def test_map_reads_a_profile_file(tmp_path):
    p = one_layer()
    p.to_json(tmp_path / "p.json")
    assert hwq.map(tmp_path / "p.json", "loom").total.cycles == map(p, "loom").total.cycles


def test_toml_top_level_keys_and_nested_option_tables(tmp_path):
    p = one_layer(c=32, k=64, hw=10, a_bits=1, w_bits=1)
    toml = tmp_path / "finn.toml"
    toml.write_text("pe = 16\nsimd = 32\n[folding]\nL = [64, 288]\n[stripes]\ntiles = 8\n")
    assert map(p, "finn", config=toml).layers[0].cycles == 100  # folding wins for layer L
    assert map(p, "stripes", config=toml).config["tiles"] == 8
