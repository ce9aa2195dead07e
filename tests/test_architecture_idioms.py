"""One idiom per concern (issue 17): the one text-table formatter, to_json alike on every file
type, the "format" header of new files (old "schema" files still read), the public names that
``from hwq import *`` brings."""
import pytest

from hwq._table import text_table


def test_text_table_hand_worked():
    # Widths by hand: col 1 = len("layer") = 5, col 2 = len("12,345") = 6, col 3 = len("bits") = 4.
    t = text_table(["layer", "MACs", "bits"], [["c1", "12,345", "4"], ["fc", "7", "8f"]],
                   total=["total", "12,352", ""], left=1)
    assert t == ("layer    MACs  bits\n"
                 "-------------------\n"
                 "c1     12,345     4\n"
                 "fc          7    8f\n"
                 "-------------------\n"
                 "total  12,352      ")


def test_text_table_without_total_and_two_left_columns():
    assert text_table(["a", "b", "n"], [["xx", "y", "1"]], left=2) == "a   b  n\n--------\nxx  y  1"


def test_text_table_refuses_a_ragged_row():
    with pytest.raises(ValueError, match=r"has 2 cells: expected 3"):
        text_table(["a", "b", "c"], [["1", "2"]])


# -- to_json: every file type returns the text and writes it when given a path --------------------
def _file_objects():
    import hwq
    from hwq.search.energy import Candidate, EnergySearchResult
    prof = hwq.workloads.build("alexnet", w_bits=8, a_bits=8)
    plan = hwq.Plan({"conv1": {"weights": "fixed:4", "acts": "fixed:8"}})
    c = Candidate("w4a4", {"conv1": (4, 4)}, 90.5, 1.5e6, 1e5, pareto=True)
    return {"Profile": prof, "Plan": plan, "Report": hwq.map(prof, "stripes"),
            "SweepResult": hwq.sweep([prof], "stripes", {"lanes": [16]}),
            "EnergySearchResult": EnergySearchResult([c], [c], c, 90.0, 91.0, "loom")}


@pytest.mark.parametrize("kind", ["Profile", "Plan", "Report", "SweepResult",
                                  "EnergySearchResult"])
def test_to_json_returns_the_text_and_writes_it_when_given_a_path(kind, tmp_path):
    import json
    obj = _file_objects()[kind]
    text = obj.to_json()
    assert isinstance(text, str) and text.endswith("\n")
    assert json.loads(text) == json.loads(json.dumps(obj.to_dict()))  # the object's own dict
    assert list(tmp_path.iterdir()) == []  # no path: nothing written
    path = tmp_path / "out.json"
    assert obj.to_json(path) == text == path.read_text()


# -- file headers: "format" on every new file; old profiles with "schema" still read ---------------
def test_new_files_name_their_header_format():
    import json
    objs = _file_objects()
    for kind in ("Profile", "Plan"):
        d = json.loads(objs[kind].to_json())
        assert d["format"] == f"hwq.{kind.lower()}" and d["version"] == 1 and "schema" not in d


def test_a_profile_written_with_the_older_schema_header_still_reads(tmp_path):
    import json

    from hwq.profile import Profile, ProfileError
    prof = _file_objects()["Profile"]
    old = json.loads(prof.to_json())
    old = {"schema": old.pop("format"), **old}  # as the earlier versions wrote it
    path = tmp_path / "old.profile.json"
    path.write_text(json.dumps(old))
    assert Profile.from_json(path).to_dict() == prof.to_dict()
    with pytest.raises(ProfileError, match=r"field 'schema' = 'hwq.plan' is not accepted: expected "
                                           r"'hwq.profile'"):
        Profile.from_dict({**old, "schema": "hwq.plan"})
    with pytest.raises(ProfileError, match=r"field 'format' = None is not accepted"):
        Profile.from_dict({k: v for k, v in old.items() if k != "schema"})
    with pytest.raises(ProfileError, match=r"unknown top-level field\(s\) \['schema'\]"):
        Profile.from_dict({**old, "format": "hwq.profile"})  # both headers: one is too many


# -- public names ----------------------------------------------------------------------------------
def test_star_import_shadows_no_builtin_and_hwq_map_still_works():
    import builtins

    import hwq
    ns: dict = {}
    exec("from hwq import *", ns)
    assert "map" not in ns and "profile" in ns  # map stays the builtin; the rest come
    assert not set(hwq.__all__) & set(dir(builtins))
    assert all(hasattr(hwq, n) for n in hwq.__all__)
    assert callable(hwq.map) and hwq.map.__module__ == "hwq.hw.mapper"
    import hwq.hw  # its star import too, and every public package of hwq
    import hwq.search
    import hwq.train
    for pkg in (hwq.hw, hwq.search, hwq.train):
        assert not set(getattr(pkg, "__all__", ())) & set(dir(builtins)), pkg.__name__


def test_the_documented_import_path_of_functions_named_like_their_module():
    # hwq.profile is the function; the package's other names come with "from hwq.profile import".
    import importlib

    import hwq
    from hwq.profile import LayerProfile, Profile  # noqa: F401  (the documented path works)
    from hwq.summary import Summary  # noqa: F401
    for name in ("profile", "summary", "export", "deploy"):
        module = importlib.import_module(f"hwq.{name}")
        assert callable(getattr(hwq, name)) and getattr(hwq, name) is getattr(module, name)
    import hwq.profile as hp  # what the docs warn about: Python gives the attribute of hwq
    assert hp is hwq.profile and not hasattr(hp, "Profile")


def test_text_table_notes_follow_their_rows():
    t = text_table(["layer", "bits"], [["a", "8"], ["bb", "4"]], notes=["pinned", ""])
    assert t == "layer  bits\n-----------\na         8  pinned\nbb        4"
    with pytest.raises(ValueError, match=r"1 given for 2 rows"):
        text_table(["layer", "bits"], [["a", "8"], ["bb", "4"]], notes=["x"])
