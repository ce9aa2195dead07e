"""Profile files: JSON round trip, CSV, DNNsim precision file, and malformed files refused with the
field and the layer named."""
import json

import pytest
import torch
from torch import nn

from hwq.profile import Profile, ProfileError, SCHEMA_VERSION, profile


@pytest.fixture
def prof():
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(16 * 4 * 4, 10))
    x = torch.randn(2, 3, 4, 4)
    return profile(model, x, batches=[x], name="tiny")


def test_json_round_trip(prof, tmp_path):
    path = tmp_path / "p.json"
    prof.to_json(path)
    d = json.loads(path.read_text())
    assert d["version"] == SCHEMA_VERSION == 1 and d["format"] == "hwq.profile"
    back = Profile.from_json(path)
    assert back.to_dict() == prof.to_dict()
    assert back[0].stats.a_group_prec == prof[0].stats.a_group_prec
    assert back.macs == prof.macs == 16 * 16 * 27 + 256 * 10


def test_csv_and_dnnsim(prof, tmp_path):
    text = prof.to_csv(tmp_path / "p.csv")
    rows = text.strip().split("\n")
    assert rows[0].startswith("name,kind,in_shape")
    assert rows[0].startswith("name,kind,in_shape,out_shape,kernel,stride,padding,dilation,groups")
    assert rows[1].startswith("0,conv,3x4x4,16x4x4,3x3,1x1,1x1,1x1,1,6912,432,16,16,float,float,True,"
                              "True")
    prof[0].a_bits, prof[0].a_frac = 9, 4
    prof[1].w_bits = 5
    dn = prof.to_dnnsim(tmp_path / "precision.txt").split("\n")
    assert len(dn) == 6 and dn[5] == ""
    mag_a = [int(v) for v in dn[1].split(";")]
    frac_a = [int(v) for v in dn[2].split(";")]
    assert (mag_a[0], frac_a[0]) == (5, 4)  # 9 bits = 5 magnitude (sign included) + 4 fraction
    assert mag_a[1] + frac_a[1] == 16
    mag_w = [int(v) for v in dn[3].split(";")]
    frac_w = [int(v) for v in dn[4].split(";")]
    assert [m + f for m, f in zip(mag_w, frac_w)] == [16, 5]


def _write(tmp_path, d):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(d))
    return path


@pytest.mark.parametrize("field,value,needle", [
    ("a_bits", "eight", "'a_bits'"),
    ("w_bits", 0, "'w_bits'"),
    ("kind", "pool", "'kind'"),
    ("macs", 5, "'macs'"),
    ("in_shape", [0], "'in_shape'"),
    ("groups", 5, "'groups'"),
    ("stats", {"a_values": -1}, "'stats.a_values'"),
    ("stats", {"a_group_prec": [1, "x"]}, "'stats.a_group_prec'"),
    ("bogus", 1, "bogus"),
])
def test_bad_layer_field_is_named(prof, tmp_path, field, value, needle):
    d = prof.to_dict()
    d["layers"][1] = dict(d["layers"][1])
    if field == "stats":
        d["layers"][1]["stats"] = dict(d["layers"][1]["stats"], **value)
    else:
        d["layers"][1][field] = value
    with pytest.raises(ProfileError) as e:
        Profile.from_json(_write(tmp_path, d))
    msg = str(e.value)
    assert needle in msg and "'3'" in msg  # the second layer is nn.Sequential's "3"


def test_missing_field_and_bad_top_level(prof, tmp_path):
    d = prof.to_dict()
    del d["layers"][0]["w_bits"]
    with pytest.raises(ProfileError, match=r"layer '0': field 'w_bits' is missing"):
        Profile.from_json(_write(tmp_path, d))
    d = prof.to_dict()
    d["version"] = 99
    with pytest.raises(ProfileError, match="'version' = 99"):
        Profile.from_json(_write(tmp_path, d))
    d = prof.to_dict()
    d["layers"] = []
    with pytest.raises(ProfileError, match="'layers'"):
        Profile.from_json(_write(tmp_path, d))
    path = tmp_path / "junk.json"
    path.write_text("{not json")
    with pytest.raises(ProfileError, match="not valid JSON"):
        Profile.from_json(path)
    d = prof.to_dict()
    d["layers"][1]["name"] = "0"
    with pytest.raises(ProfileError, match="not unique"):
        Profile.from_json(_write(tmp_path, d))


def test_editing_is_checked(prof):
    prof[0].a_bits = 9
    prof.validate()
    prof[0].a_bits = 40
    with pytest.raises(ProfileError, match="layer '0': field 'a_bits' = 40"):
        prof.validate()
    with pytest.raises(ValueError, match="one per layer"):
        prof.set_bits(a_bits=[8])
