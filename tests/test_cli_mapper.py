"""The `hwq map` and `hwq profile` subcommands."""
import csv
import io
import json

import torch
import torchvision

import hwq
from hwq.cli import main


def test_map_workload_formats(tmp_path, capsys):
    assert main(["map", "alexnet", "--arch", "stripes,loom"]) == 0
    out = capsys.readouterr().out
    assert "stripes vs dadiannao on alexnet" in out and "loom vs dadiannao" in out
    assert main(["map", "alexnet", "--arch", "bitfusion", "--format", "json",
                 "-o", str(tmp_path / "r.json")]) == 0
    d = json.loads((tmp_path / "r.json").read_text())
    assert d[0]["arch"] == "bitfusion" and len(d[0]["layers"]) == 8
    assert main(["map", "alexnet", "--arch", "all", "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert {r["arch"] for r in rows} == set(hwq.hw.ARCHS)


def test_map_errors_are_one_line(capsys):
    assert main(["map", "alexnet", "--arch", "tpu_v9"]) == 2
    assert "accepted: dadiannao" in capsys.readouterr().err
    assert main(["map", "no_such_file.json"]) == 2
    assert "neither a profile JSON file nor a workload" in capsys.readouterr().err


def test_profile_workload_then_map(tmp_path, capsys):
    path = tmp_path / "p.json"
    assert main(["profile", "--workload", "vgg_s", "--a-bits", "9", "-o", str(path)]) == 0
    p = hwq.Profile.from_json(path)
    assert p.name == "vgg_s" and all(l.a_bits == 9 for l in p)
    assert main(["map", str(path), "--arch", "stripes", "--config", str(_toml(tmp_path))]) == 0
    assert "stripes vs dadiannao on vgg_s" in capsys.readouterr().out
    assert main(["profile", "--workload", "alexnet", "--format", "dnnsim"]) == 0
    assert capsys.readouterr().out.count("\n") == 5


def _toml(tmp_path):
    t = tmp_path / "hw.toml"
    t.write_text("[stripes]\ntiles = 8\n")
    return t


def test_profile_from_checkpoint(tmp_path):
    model = torchvision.models.get_model("resnet18", weights=None)
    hwq.quantize(model, weights="fixed:4", acts="fixed:8")
    model.eval()
    with torch.no_grad():
        model(torch.randn(1, 3, 32, 32))
    torch.save({"model": model.state_dict()}, tmp_path / "ck.pt")
    out = tmp_path / "p.json"
    assert main(["profile", "--checkpoint", str(tmp_path / "ck.pt"), "--model", "resnet18",
                 "--weights", "fixed:4", "--acts", "fixed:8", "--input-size", "1,3,32,32",
                 "--batches", "1", "-o", str(out)]) == 0
    p = hwq.Profile.from_json(out)
    assert len(p) == 21 and p[1].w_bits == 4 and p[1].a_bits == 8 and p.has_stats
    assert "synthetic" in p.meta["stats_inputs"]


def test_plot_when_matplotlib_is_installed(tmp_path, capsys):
    import pytest
    pytest.importorskip("matplotlib")
    out = tmp_path / "p.png"
    assert main(["map", "alexnet", "--arch", "stripes,loom", "--plot", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_map_refuses_an_empty_arch(capsys):
    assert main(["map", "alexnet", "--arch", ""]) == 2
    assert "--arch '' names no design" in capsys.readouterr().err
    assert main(["map", "alexnet", "--arch", ",,"]) == 2


def test_map_reports_fps_latency_and_area(capsys):
    assert main(["map", "finn_cnv", "--arch", "finn", "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    total = [r for r in rows if r["layer"] == "total"][0]
    assert float(total["fps"]) > 0 and float(total["latency_s"]) > 0
    assert float(total["area_mm2"]) > 0


def test_profile_histogram_past_bit_16_is_refused(tmp_path):
    import pytest
    from hwq.profile.stats import LayerStats
    from hwq.workloads.builder import single
    p = single(a_bits=8)
    p[0].stats = LayerStats(a_group_prec=[0] * 18 + [3])
    with pytest.raises(ValueError, match=r"stats.a_group_prec.*bits 0..17.*bit 18 has 3"):
        p.validate()


def test_map_config_not_utf8_or_not_toml_is_named(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_bytes(b"\xff\xfe[loom]\n")
    assert main(["map", "alexnet", "--arch", "loom", "--config", str(bad)]) == 2
    assert f"config '{bad}' is not UTF-8 text" in capsys.readouterr().err
    bad.write_text("[loom\n")
    assert main(["map", "alexnet", "--arch", "loom", "--config", str(bad)]) == 2
    assert f"config '{bad}' is not valid TOML" in capsys.readouterr().err
