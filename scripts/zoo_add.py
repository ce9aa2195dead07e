"""Add (or replace) a model-zoo entry from a finished `hwq train` run.

    python scripts/zoo_add.py RUN_DIR SCHEME NAME --data-dir DIR [--note TEXT] [--commit REV]

e.g. `python scripts/zoo_add.py runs/cifar10 w4a4 cifar10/resnet20-w4a4 --data-dir DIR`.
The entry's test accuracy is re-measured from the written file on DIR's test split and must agree
with the run's own to 0.05 points; then hwq/zoo/<data set>/<model>-<scheme>.pt is written
atomically. Keep the zoo under 40 MB: replace entries, do not add versions.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import hwq.zoo  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("run_dir")
    p.add_argument("scheme")
    p.add_argument("name", help="<data set>/<model>-<scheme>, e.g. cifar10/resnet20-w4a4")
    p.add_argument("--data-dir", required=True)
    p.add_argument("--note", default=None, help="free text kept in the entry's meta")
    p.add_argument("--commit", default=None, help="the commit that trained it, when the run's "
                   "own record is not right (e.g. code changed during the run)")
    p.add_argument("--machine", default=None, help="the machine that trained it, when the run "
                   "did not record it (default: the run's record, else this machine)")
    args = p.parse_args()
    extra = {k: v for k, v in (("note", args.note), ("commit", args.commit),
                               ("machine", args.machine)) if v}
    meta = hwq.zoo.add(args.run_dir, args.scheme, args.name, args.data_dir, **extra)
    shown = {k: v for k, v in meta.items() if k != "recipe"}
    print(json.dumps(shown, indent=1))
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(hwq.zoo.ZOO_DIR)
               for f in fs if f.endswith(".pt"))
    print(f"zoo size: {size / 2**20:.1f} MB (keep it under 40 MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
