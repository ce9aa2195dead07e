"""Report and sweep JSON files: the ``"format"`` / ``"version"`` header every hwq file carries,
read back field for field (the reread report's numbers equal hwq.map's, the reread sweep's table,
front, pick and CSV equal the sweep's), and the refusal of a file without the header, with
another format (a profile given as a report) or another version, naming the file and the value."""
import json
import math

import pytest

import hwq
from hwq.hw import Report, SweepResult, read_reports, reports_json
from hwq.workloads.builder import single


def _report():
    p = hwq.workloads.build("resnet18", w_bits=8, a_bits=4)
    return p, hwq.map(p, "bitfusion")


def test_report_file_has_the_header_and_reads_back(tmp_path):
    p, r = _report()
    path = tmp_path / "r.json"
    d = json.loads(r.to_json(path))
    assert (d["format"], d["version"]) == ("hwq.report", 1)
    back = Report.from_json(path)
    # every field, NaN (undefined per layer) included, as written; hwq.map gives the same again
    assert json.dumps(back.to_dict()) == json.dumps(r.to_dict())
    again = hwq.map(p, "bitfusion")
    assert back.total.cycles == again.total.cycles
    assert back.total.energy_pj.total == again.total.energy_pj.total
    assert back["layer2.0.downsample.0"].offchip_bits == again["layer2.0.downsample.0"].offchip_bits
    assert math.isnan(back.layers[0].fps) and back.total.fps == r.total.fps
    assert back.table() == r.table()


def test_several_reports_as_the_cli_writes_them(tmp_path):
    p, r = _report()
    s = hwq.map(p, "loom")
    path = tmp_path / "rs.json"
    reports_json([r, s], path)
    assert [x["format"] for x in json.loads(path.read_text())] == ["hwq.report"] * 2
    back = read_reports(path)
    assert [b.arch for b in back] == ["bitfusion", "loom"]
    assert back[1].total.energy_pj.total == s.total.energy_pj.total
    r.to_json(tmp_path / "one.json")
    assert [b.arch for b in read_reports(tmp_path / "one.json")] == ["bitfusion"]
    with pytest.raises(ValueError, match=r"rs\.json.*list of 2 reports.*read_reports"):
        Report.from_json(path)
    # the CLI's --format json is that list
    from hwq.cli import main
    out = tmp_path / "cli.json"
    assert main(["map", "alexnet", "--arch", "loom,stripes", "--format", "json",
                 "-o", str(out)]) == 0
    assert [b.arch for b in read_reports(out)] == ["loom", "stripes"]


def _write(path, data):
    path.write_text(json.dumps(data))
    return path


def test_report_without_or_with_another_header_is_refused(tmp_path):
    _, r = _report()
    d = r.to_dict()
    missing = {k: v for k, v in d.items() if k != "format"}
    with pytest.raises(ValueError, match=r"old\.json.*'format' is missing: expected "
                                         r"'hwq\.report'"):
        Report.from_json(_write(tmp_path / "old.json", missing))
    prof = tmp_path / "p.json"
    hwq.workloads.build("alexnet").to_json(prof)
    with pytest.raises(ValueError, match=r"p\.json.*'format' = 'hwq\.profile' is not accepted: "
                                         r"expected 'hwq\.report'"):
        Report.from_json(prof)
    with pytest.raises(ValueError, match=r"v2\.json.*'version' = 2 is not accepted"):
        Report.from_json(_write(tmp_path / "v2.json", {**d, "version": 2}))
    with pytest.raises(ValueError, match=r"'version' = 1\.0 is not accepted"):
        Report.from_json(_write(tmp_path / "v1f.json", {**d, "version": 1.0}))
    with pytest.raises(ValueError, match=r"list\.json.*entry 1: .*'format' is missing"):
        read_reports(_write(tmp_path / "list.json", [d, missing]))
    with pytest.raises(ValueError, match=r"x\.json.*expected a JSON object .*got a str"):
        Report.from_json(_write(tmp_path / "x.json", "hwq.report"))
    bad = json.loads(json.dumps(d))
    bad["layers"][0]["cycles"] = "many"
    with pytest.raises(ValueError, match=r"b\.json': layers\[0\]\.cycles = 'many'"):
        Report.from_json(_write(tmp_path / "b.json", bad))
    extra = {**d, "speed": 1}
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['speed'\]"):
        Report.from_json(_write(tmp_path / "e.json", extra))


def _sweep():
    p = single(c=16, k=32, hw=8, w_bits=8, a_bits=8)
    q = single(c=32, k=32, hw=4, w_bits=8, a_bits=8)
    q.name = "other"
    # a zero-lane point is infeasible (NaN metrics, written as null)
    return hwq.sweep([p, q], "systolic_ws", {"rows": [0, 8, 16], "cols": [8, 32]})


def test_sweep_file_has_the_header_and_reads_back(tmp_path):
    r = _sweep()
    assert any(not x["feasible"] for x in r.rows)
    path = tmp_path / "sweep.json"
    d = json.loads(r.to_json(path))
    assert (d["format"], d["version"]) == ("hwq.sweep", 1)
    back = SweepResult.from_json(path)
    assert back.to_csv() == r.to_csv()
    assert back.table() == r.table()
    assert [x["point"] for x in back.front()] == [x["point"] for x in r.front()]
    assert back.pick(fps=1)["point"] == r.pick(fps=1)["point"]
    assert json.dumps(back.to_dict()) == json.dumps(r.to_dict())
    # the file holds no profiles: mapping a point again is refused, with what to do
    with pytest.raises(ValueError, match=r"report is not available on a sweep read from "
                                         r"'.*sweep\.json'.*run hwq\.sweep again"):
        back.report(back.front()[0]["point"])
    with pytest.raises(ValueError, match="config is not available"):
        back.config(0)


def test_several_designs_read_back(tmp_path):
    p = single(c=16, k=32, hw=8, w_bits=8, a_bits=8)
    r = hwq.sweep(p, "systolic_ws,eyeriss", {"systolic_ws.rows": [8, 16], "eyeriss.rows": [6, 12]})
    back = SweepResult.from_json(_write(tmp_path / "s.json", r.to_dict()))
    assert back.archs == r.archs == ["systolic_ws", "eyeriss"]
    assert back.to_csv() == r.to_csv() and back.table() == r.table()
    assert {a: back.parts[a].params for a in back.archs} == {a: r.parts[a].params
                                                            for a in r.archs}


def test_sweep_without_or_with_another_header_is_refused(tmp_path):
    d = _sweep().to_dict()
    with pytest.raises(ValueError, match=r"old\.json.*'format' is missing: expected 'hwq\.sweep'"):
        SweepResult.from_json(_write(tmp_path / "old.json",
                                     {k: v for k, v in d.items() if k != "format"}))
    _, r = _report()
    r.to_json(tmp_path / "rep.json")
    with pytest.raises(ValueError, match=r"rep\.json.*'format' = 'hwq\.report' is not accepted: "
                                         r"expected 'hwq\.sweep'"):
        SweepResult.from_json(tmp_path / "rep.json")
    with pytest.raises(ValueError, match=r"'version' = '1' is not accepted"):
        SweepResult.from_json(_write(tmp_path / "v.json", {**d, "version": "1"}))
    rows = [dict(x) for x in d["rows"]]
    del rows[2]["fps"]
    with pytest.raises(ValueError, match=r"c\.json': rows\[2\] = .* expected the columns"):
        SweepResult.from_json(_write(tmp_path / "c.json", {**d, "rows": rows}))
    with pytest.raises(ValueError, match=r"objective 'speed' is not accepted"):
        SweepResult.from_json(_write(tmp_path / "o.json", {**d, "objectives": ["speed"]}))
