"""Per-layer precision plans: JSON round trip, application, malformed files."""
import json
import os

import pytest
import torch
from torch import nn

import hwq


def net():
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.Flatten(),
                         nn.Linear(8 * 4 * 4, 4))


def test_plan_from_model_round_trips_through_json(tmp_path):
    m = hwq.quantize(net(), weights="fixed:4", acts="lsq:4",
                     layers={"0": dict(weights="fixed:8", acts=None),
                             "2": dict(weights={"name": "binary", "scale": "channel"})})
    plan = hwq.Plan.from_model(m)
    path = tmp_path / "plan.json"
    plan.to_json(path)
    data = json.loads(path.read_text())
    assert data["format"] == "hwq.plan" and data["version"] == 1
    assert data["layers"]["0"] == {"weights": "fixed:8", "acts": None}
    assert data["layers"]["2"]["weights"] == {"name": "binary", "scale": "channel", "grad": "ste"}
    again = hwq.Plan.from_json(path)
    assert again == plan
    fresh = hwq.quantize(net(), plan=str(path))
    assert hwq.Plan.from_model(fresh) == plan
    assert [(l.w_bits, l.a_bits) for l in (fresh[0], fresh[2], fresh[4])] == [(8, 32), (1, 4), (4, 4)]


def test_plan_entries_override_defaults_partially():
    plan = hwq.Plan({"2": {"acts": "fixed:2"}})
    m = hwq.quantize(net(), weights="fixed:6", acts="fixed:6", plan=plan)
    assert (m[2].w_quant, m[2].a_quant) == ("fixed:6", "fixed:2")
    assert (m[0].w_quant, m[0].a_quant) == ("fixed:6", "fixed:6")


@pytest.mark.parametrize("content,match", [
    ("{not json", "is not valid JSON"),
    ("[1, 2]", "expected a JSON object at the top level"),
    ('{"format": "other", "version": 1, "layers": {}}', "field 'format': 'other' is not accepted"),
    ('{"format": "hwq.plan", "version": 7, "layers": {}}', "field 'version': 7 is not accepted"),
    ('{"format": "hwq.plan", "version": 1, "layers": [], "x": 1}', r"unknown field\(s\) \['x'\]"),
    ('{"format": "hwq.plan", "version": 1, "layers": []}', "field 'layers': expected an object"),
    ('{"format": "hwq.plan", "version": 1, "layers": {"0": "fixed:4"}}', "plan layer '0': entry 'fixed:4'"),
    ('{"format": "hwq.plan", "version": 1, "layers": {"0": {"w": "fixed:4"}}}', r"plan layer '0': unknown key\(s\) \['w'\]"),
    ('{"format": "hwq.plan", "version": 1, "layers": {"2": {"weights": "fixed:40"}}}',
     "plan layer '2', field 'weights': bits=40 is not accepted"),
    ('{"format": "hwq.plan", "version": 1, "layers": {"2": {"acts": "pow2:4"}}}',
     "plan layer '2', field 'acts': quantizer 'pow2' cannot be applied to activations"),
])
def test_malformed_plan_files(tmp_path, content, match):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=match):
        hwq.Plan.from_json(path)


def test_plan_naming_a_missing_layer(tmp_path):
    path = tmp_path / "p.json"
    hwq.Plan({"conv9": {"weights": "fixed:4"}}).to_json(path)
    with pytest.raises(ValueError, match="plan layer 'conv9' matches no quantizable layer"):
        hwq.quantize(net(), plan=path)


def test_to_json_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "p.json"
    hwq.Plan({"0": {"weights": "fixed:4"}}).to_json(path)
    before = path.read_text()

    def boom(*a, **k):
        raise OSError("disk full")
    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError, match="disk full"):
        hwq.Plan({"0": {"weights": "binary"}}).to_json(path)
    assert path.read_text() == before  # the old file is intact
    assert os.listdir(tmp_path) == ["p.json"]  # no temporary left behind
