"""The machine record every run writes: the CPU as /proc/cpuinfo names it, with its family and
model numbers (a virtual machine may call its CPU only "AMD EPYC"), cores and torch threads."""
import os
import re

import pytest
import torch

from hwq.train.run import provenance


def test_machine_names_cpu_family_model_cores_and_threads():
    machine = provenance()["machine"]
    threads = torch.get_num_threads()
    assert machine.endswith(f", {os.cpu_count()} cores, {threads} torch thread"
                            + ("s" if threads != 1 else ""))
    if not os.path.exists("/proc/cpuinfo"):
        pytest.skip("no /proc/cpuinfo on this system")
    first = open("/proc/cpuinfo").read().split("\n\n")[0]
    family = re.search(r"^cpu family\s*:\s*(\S+)", first, re.M)
    model = re.search(r"^model\s*:\s*(\S+)", first, re.M)
    name = re.search(r"^model name\s*:\s*(.+)$", first, re.M)
    if name:
        assert machine.startswith(name.group(1).strip())
    if family and model:
        assert f"(family {family.group(1)} model {model.group(1)})" in machine


def test_one_thread_is_singular():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert provenance()["machine"].endswith(", 1 torch thread")
    finally:
        torch.set_num_threads(before)
