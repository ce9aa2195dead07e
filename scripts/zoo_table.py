"""The table of docs/training.md from the model zoo: every entry's accuracy, epochs, wall time and
machine as recorded, its cost on Loom (against DaDianNao) and BitFusion (images/s, energy) (hwq.profile with run-time statistics from
two test batches, then hwq.map against DaDianNao).

    python scripts/zoo_table.py [--data-dir DIR] [--prefix cifar10/]

DIR: the data set's folder (default $HWQ_DATA/<data set>, else ../shared/data/<data set> beside
the repository); without it, the profiles carry no run-time statistics. BitFusion runs its
default configuration (the authors' 16x32 fusion units, batch 16, 192 bits per cycle of DRAM).
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import torch  # noqa: E402

import hwq  # noqa: E402
from hwq import zoo  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def data_dir_for(name: str, given: str | None) -> str | None:
    if given:
        return given
    root = os.environ.get("HWQ_DATA") or os.path.join(ROOT, "..", "shared", "data")
    path = os.path.join(root, name.split("/")[0])
    return path if os.path.isdir(path) else None


def row(name: str, data_dir: str | None) -> list[str]:
    meta = zoo.info(name)
    model = zoo.load(name)
    batches = None
    if data_dir:
        test = zoo.test_set(meta, data_dir)
        batches = [test.batch(list(range(i * 100, (i + 1) * 100)))[0] for i in range(2)]
    example = torch.zeros(1, *meta["input_shape"])
    prof = hwq.profile(model, example, batches=batches, name=name)
    report = meta["recipe"]["report"]  # the recipe's options for its own arch (Loom)
    loom = hwq.map(prof, "loom", baseline="dadiannao",
                   config=report["config"] if report["arch"] == "loom" else None)
    bitfusion = hwq.map(prof, "bitfusion", baseline="dadiannao")
    cells = [f"{loom.total.speedup:.2f}x / {loom.total.energy_efficiency:.2f}x",
             f"{bitfusion.total.fps:,.0f} / {bitfusion.total.energy_pj.total / 1e6:.1f}"]
    hours = meta["train_s"] / 3600
    return [name, meta["w_bits"] or "f", meta["a_bits"] or "f", f"{meta['test_acc']:.2f}",
            str(meta["epochs"]), f"{hours:.1f} h", meta.get("machine", "?"), *cells]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--prefix", default="")
    args = p.parse_args()
    head = ["entry", "w_bits", "a_bits", "test %", "epochs", "train time", "machine",
            "Loom: speedup / energy eff. vs DaDianNao", "BitFusion: images/s / uJ per image"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    def order(name):  # by model, then in the order of the recipe's schemes
        meta = zoo.info(name)
        return meta["model"], list(meta["recipe"]["schemes"]).index(meta["scheme"])
    for name in sorted(zoo.names(), key=order):
        if name.startswith(args.prefix):
            print("| " + " | ".join(row(name, data_dir_for(name, args.data_dir))) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
