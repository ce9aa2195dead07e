"""hwq's systolic array described to ZigZag (KU Leuven's design-space exploration framework:
Mei et al., "ZigZag: Enlarging Joint Architecture-Mapping Design Space Exploration for DNN
Accelerators", IEEE Transactions on Computers 2021; the ``zigzag-dse`` package), so that the two
cost models can be run on the same design and the same layers and compared.

Three inputs are written, in ZigZag's own YAML formats:
* the workload: one ``Conv`` layer per conv / FC layer of a Profile (loop dimensions B, K, C, OY,
  OX, FY, FX; ``ix = stride * ox + fx`` with the layer's padding; the operands stored at the
  design's ``storage_bits``, as hwq's memory model stores them, partial sums at the accumulator
  width hwq's MAC energy assumes);
* the hardware: a rows x cols array of MACs (``systolic_dimensions`` on both axes, so ZigZag
  counts the drain of the last results), one weight register and one accumulator per PE, a global
  buffer (TPU v1's 24 MiB; Jouppi et al., ISCA 2017) and DRAM. The MAC costs hwq's energy-table
  MAC of the layer (``EnergyTable.mac_pj``), a buffer or DRAM access hwq's pJ per bit times the
  port width; the PE registers cost nothing, as in hwq, whose MAC energy covers them. The ports
  are wide enough that no memory stalls the array: hwq's systolic model (SCALE-Sim's compute
  model) has no bandwidth limit either;
* the mapping: weight stationary, the reduction's input channels C spatially on the rows (D1)
  and the filters K on the columns (D2), and hwq's loop order (``mapping``).

``compare`` runs both and returns a row per layer. The two models share the array and the
MAC energy and nothing else: ZigZag derives its access counts from the loop nest it searches, hwq
from first-order reuse factors (``hwq.hw.cost.memory``). docs/mapper.md gives the agreement.
"""
from __future__ import annotations

import dataclasses
import math
import os
from typing import Any

from ..profile import LayerProfile, Profile
from .cost import packed_bits, reduction
from .energy import accumulator_bits
from .systolic import SystolicConfig

BUFFER_BYTES = 24 * 2**20
"""Global buffer: TPU v1's 24 MiB unified buffer (Jouppi et al., ISCA 2017), large enough to hold
any ResNet-50 layer, so that ZigZag, like hwq, reads each tensor from DRAM once."""
PORT_BITS = 8192
"""Bits per cycle of the buffer and DRAM ports: wide enough never to stall the array (assumed, to
match hwq's systolic model, which has no bandwidth limit), and narrow enough that ZigZag's access
counts, whole port words, lose no small tensor to rounding (it truncates a count below a word)."""


def _require_zigzag():
    try:
        import yaml  # noqa: F401  (ZigZag depends on PyYAML)
        import zigzag.api  # noqa: F401
    except ImportError as e:
        raise ImportError("hwq.hw.zigzag needs ZigZag: pip install 'hwq[zigzag]' "
                          f"(zigzag-dse; import failed: {e})") from None


def workload(profile: Profile, storage_bits: int = 8) -> list[dict[str, Any]]:
    """ZigZag's workload (a list of layer dicts, its YAML format) for the conv and FC layers of
    ``profile``: an FC layer is a 1 x 1 convolution over its tokens. Grouped convolutions are not
    written (ValueError naming the layer): ZigZag's plain Conv equation has no group dimension."""
    if not isinstance(profile, Profile):
        raise TypeError(f"profile={type(profile).__name__} is not accepted: expected a hwq.Profile")
    if isinstance(storage_bits, bool) or not isinstance(storage_bits, int) or storage_bits < 1:
        raise ValueError(f"storage_bits={storage_bits!r} is not accepted: expected an int >= 1")
    out = []
    for layer in profile.layers:
        if layer.kind not in ("conv", "fc"):
            continue
        if layer.groups != 1:
            raise ValueError(f"layer {layer.name!r} has groups={layer.groups}: the ZigZag workload "
                             "writer accepts groups=1 only")
        k, c = layer.out_channels, layer.in_channels
        if layer.kind == "conv":
            (fy, fx), (sy, sx), (py, px) = layer.kernel, layer.stride, layer.padding
            dy, dx = layer.dilation
            oy, ox = layer.out_shape[1], layer.out_shape[2]
        else:  # FC: a 1 x 1 convolution over the tokens
            fy = fx = sy = sx = dy = dx = 1
            py = px = 0
            oy, ox = 1, layer.windows
        node = {
            "id": len(out), "name": layer.name, "operator_type": "Conv",
            "equation": "O[b][k][oy][ox]+=W[k][c][fy][fx]*I[b][c][iy][ix]",
            "dimension_relations": [f"ix={sx}*ox+{dx}*fx", f"iy={sy}*oy+{dy}*fy"],
            "loop_dims": ["B", "K", "C", "OY", "OX", "FY", "FX"],
            "loop_sizes": [1, k, c, oy, ox, fy, fx],
            "operand_precision": {"W": storage_bits, "I": storage_bits,
                                  "O": _acc_bits(layer, storage_bits), "O_final": storage_bits},
            # the first layer reads the network input; each later one its predecessor's output
            "operand_source": {"I": len(out) - 1 if out else 0},
        }
        if py or px:
            node["pr_loop_dims"] = ["IY", "IX"]
            node["padding"] = [[py, py], [px, px]]
        out.append(node)
    if not out:
        raise ValueError(f"profile {profile.name!r} has no conv or fc layer to write for ZigZag")
    return out


def _acc_bits(layer: LayerProfile, storage_bits: int) -> int:
    return int(accumulator_bits(storage_bits, storage_bits, reduction(layer)))


def _port(name: str, kind: str, bits: int, word: int, allocation: list[str]) -> dict[str, Any]:
    # ZigZag counts accesses in ``word``-bit steps, charged as fractions of a ``bits``-bit access
    return {"name": name, "type": kind, "bandwidth_min": word, "bandwidth_max": bits,
            "allocation": allocation}


def hardware(cfg: SystolicConfig, mac_pj: float, acc_bits: int = 32) -> dict[str, Any]:
    """ZigZag's accelerator description (its YAML format) of hwq's weight-stationary systolic array
    ``cfg`` (module docstring), with ``mac_pj`` per MAC and ``acc_bits``-bit accumulators."""
    if not isinstance(cfg, SystolicConfig):
        raise TypeError(f"cfg={type(cfg).__name__} is not accepted: expected a SystolicConfig")
    if cfg.dataflow != "ws":
        raise ValueError(f"cfg.dataflow={cfg.dataflow!r} is not accepted: the ZigZag description "
                         "is written for the weight-stationary array ('ws') only")
    if not (isinstance(mac_pj, (int, float)) and math.isfinite(mac_pj) and mac_pj >= 0):
        raise ValueError(f"mac_pj={mac_pj!r} is not accepted: expected a finite number >= 0")
    bits, wide = cfg.storage_bits, PORT_BITS
    sram_pj, dram_pj = cfg.energy.sram_pj_per_bit, cfg.energy.dram_pj_per_bit

    def ports(width: int, reads: list[str], writes: list[str]) -> list[dict[str, Any]]:
        # a port per transfer: ZigZag adds up the transfers that share a port, and hwq's model
        # has no port limit to match; accesses counted in steps of one stored value
        word = min(width, bits)
        return ([_port(f"r_port_{i + 1}", "read", width, word, [a]) for i, a in enumerate(reads)]
                + [_port(f"w_port_{i + 1}", "write", width, word, [a])
                   for i, a in enumerate(writes)])

    def level(size: int, pj: float, operands: list[str], width: int, served: list[str],
              reads: list[str], writes: list[str]) -> dict[str, Any]:
        return {"size": size, "r_cost": pj * width, "w_cost": pj * width, "area": 0,
                "latency": 1, "operands": operands, "ports": ports(width, reads, writes),
                "served_dimensions": served}

    big = ["I1", "I2", "O"]
    big_reads, big_writes = ["I1, tl", "I2, tl", "O, tl", "O, th"], ["I1, fh", "I2, fh", "O, fh",
                                                                     "O, fl"]
    # PE registers cost nothing (hwq's MAC energy covers them); weights are double-buffered as
    # in TPU v1 (Jouppi et al. 2017), and a PE holds the partial sum it adds to and the one it
    # passes down its column
    return {
        "name": f"hwq_systolic_ws_{cfg.rows}x{cfg.cols}",
        "memories": {
            "w_reg": level(2 * bits, 0.0, ["I2"], bits, [], ["I2, tl"], ["I2, fh"]),
            "acc_reg": level(2 * acc_bits, 0.0, ["O"], acc_bits, [], ["O, tl", "O, th"],
                             ["O, fh", "O, fl"]),
            "buffer": level(BUFFER_BYTES * 8, sram_pj, big, wide, ["D1", "D2"], big_reads,
                            big_writes),
            "dram": level(10**12, dram_pj, big, wide, ["D1", "D2"], big_reads, big_writes),
        },
        "operational_array": {
            "unit_energy": float(mac_pj), "unit_area": 1, "dimensions": ["D1", "D2"],
            "sizes": [cfg.rows, cfg.cols], "systolic_dimensions": ["D1", "D2"]},
    }


def mapping(cfg: SystolicConfig, nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """ZigZag's mapping file for the workload ``nodes``: C on the rows (D1), K on the columns
    (D2), weights in I2, and per layer the weight-stationary loop order of hwq's (SCALE-Sim's)
    schedule, innermost first: the output pixels OX, OY stream past the held weights, then the
    reduction's folds FX, FY, C, then the column folds K. Giving the order (instead of letting
    ZigZag's LOMA search one) compares the cost models on one schedule; a free search also
    moves the weights every cycle into a one-weight register, which is not this array."""
    out = [{"name": "default",
            "spatial_mapping": {"D1": [f"C, {cfg.rows}"], "D2": [f"K, {cfg.cols}"]},
            "memory_operand_links": {"O": "O", "W": "I2", "I": "I1"}}]
    for node in nodes:
        size = dict(zip(node["loop_dims"], node["loop_sizes"]))
        temporal = {"OX": size["OX"], "OY": size["OY"], "FX": size["FX"], "FY": size["FY"],
                    "C": -(-size["C"] // cfg.rows), "K": -(-size["K"] // cfg.cols)}
        out.append({**out[0], "name": node["name"],
                    "temporal_ordering": [[d, t] for d, t in temporal.items() if t > 1]})
    return out


@dataclasses.dataclass
class LayerComparison:
    """One layer on hwq's systolic array and on ZigZag's description of it.

    hwq_stream_cycles: hwq's cycles less SCALE-Sim's fill and drain ((2R + C - 2) per fold), i.e.
    the windows streamed through the array once per fold. zz_ideal_temporal_cycles: the temporal
    loop iterations of ZigZag's mapping; zz_latency0: that plus memory stalls; zz_latency2: plus
    loading the first data, offloading the last and the systolic drain (ZigZag's
    ``latency_total0/2``). hwq_read_bits: the weight and input bits hwq reads from the buffer into
    the array (its on-chip traffic less the outputs written); zz_read_bits: the same reads in
    ZigZag's access counts. Energies in pJ: ZigZag's buffer energy split into those reads
    (``zz_read_pj``), the partial and final outputs (``zz_output_pj``) and the fills from DRAM
    (``zz_fill_pj``)."""

    name: str
    macs: int
    zz_macs: int
    hwq_cycles: float
    hwq_stream_cycles: int
    folds: int
    zz_ideal_temporal_cycles: float
    zz_latency0: float
    zz_latency2: float
    zz_spatial_utilization: float
    hwq_compute_pj: float
    hwq_onchip_pj: float
    hwq_offchip_pj: float
    hwq_read_bits: float
    zz_mac_pj: float
    zz_read_bits: float
    zz_read_pj: float
    zz_output_pj: float
    zz_fill_pj: float
    zz_dram_pj: float
    perfect: bool
    """A 1 x 1 kernel, C a multiple of the rows and K of the columns: both tools fill the array."""

    @property
    def hwq_energy_pj(self) -> float:
        return self.hwq_compute_pj + self.hwq_onchip_pj + self.hwq_offchip_pj

    @property
    def zz_buffer_pj(self) -> float:
        return self.zz_read_pj + self.zz_output_pj + self.zz_fill_pj

    @property
    def zz_energy_pj(self) -> float:
        return self.zz_mac_pj + self.zz_buffer_pj + self.zz_dram_pj


def _write_yaml(path: str, data: Any) -> None:
    import yaml

    from .._io import atomic_write_text
    atomic_write_text(path, yaml.safe_dump(data, sort_keys=False))


def compare(profile: Profile, cfg: SystolicConfig | None = None, workdir: str | os.PathLike = ".",
            lpf_limit: int = 6) -> list[LayerComparison]:
    """Run ``profile`` on hwq's weight-stationary systolic array ``cfg`` (hwq.map) and on
    ZigZag's description of it (ZigZag's LOMA mapper, minimal latency; ``lpf_limit`` is its
    loop-prime-factor limit). ``workdir`` receives the YAML inputs and ZigZag's output folder.
    Needs ZigZag (``pip install 'hwq[zigzag]'``)."""
    _require_zigzag()
    import logging

    from zigzag.api import get_hardware_performance_zigzag

    from .mapper import map as hwq_map
    cfg = SystolicConfig(dataflow="ws") if cfg is None else cfg
    if not isinstance(cfg, SystolicConfig):
        raise TypeError(f"cfg={type(cfg).__name__} is not accepted: expected a SystolicConfig")
    cfg.check()
    for layer in profile.layers:
        if max(layer.w_bits, layer.a_bits) > cfg.bits:
            raise ValueError(f"layer {layer.name!r} has w_bits={layer.w_bits}, "
                             f"a_bits={layer.a_bits}: the comparison runs layers within the "
                             f"array's bits={cfg.bits} (hwq's extra passes have no ZigZag "
                             "counterpart)")
    workdir = os.fspath(workdir)
    os.makedirs(workdir, exist_ok=True)
    report = hwq_map(profile, "systolic_ws", config=cfg)
    layers = [l for l in profile.layers if l.kind in ("conv", "fc")]
    nodes = workload(profile, cfg.storage_bits)
    # ZigZag has one MAC energy per array: layers whose hwq MAC energy (accumulator width) differs
    # run on their own copy of the description
    groups: dict[float, list[int]] = {}
    for i, layer in enumerate(layers):
        e = cfg.energy.mac_pj(cfg.bits, cfg.bits, reduction(layer))
        groups.setdefault(e, []).append(i)
    mapping_path = os.path.join(workdir, "mapping.yaml")
    _write_yaml(mapping_path, mapping(cfg, nodes))
    zz: dict[int, Any] = {}
    level = logging.getLogger().level
    for g, (mac_pj, idx) in enumerate(sorted(groups.items())):
        acc = max(_acc_bits(layers[i], cfg.storage_bits) for i in idx)
        hw_path = os.path.join(workdir, f"hardware_{g}.yaml")
        _write_yaml(hw_path, hardware(cfg, mac_pj, acc_bits=acc))
        sub = [dict(nodes[i], id=j, operand_source={"I": max(j - 1, 0)}) for j, i in enumerate(idx)]
        wl_path = os.path.join(workdir, f"workload_{g}.yaml")
        _write_yaml(wl_path, sub)
        try:
            _, _, cmes = get_hardware_performance_zigzag(
                wl_path, hw_path, mapping_path, opt="latency",
                dump_folder=os.path.join(workdir, f"out_{g}"), lpf_limit=lpf_limit,
                loma_show_progress_bar=False)
        finally:  # ZigZag's API sets the root logger to INFO
            logging.getLogger().setLevel(level)
        for j, (cme, _) in enumerate(cmes[0][1]):
            zz[idx[j]] = cme
    from zigzag.hardware.architecture.memory_port import DataDirection
    rows = []
    by_name = {l.name: l for l in report.layers}
    store = cfg.storage_bits
    for i, layer in enumerate(layers):
        r, cme = by_name[layer.name], zz[i]
        kh, kw = layer.kernel
        m, n, k = layer.windows, layer.filters_per_group, layer.channels_per_group * kh * kw
        folds = -(-k // cfg.rows) * -(-n // cfg.cols)
        # ZigZag's per-level access counts are in port words (PORT_BITS) at the buffer
        read_bits = read_pj = output_pj = fill_pj = dram_pj = 0.0
        for op, per_level in cme.memory_word_access.items():
            levels = cme.accelerator.memory_hierarchy.get_memory_levels(
                cme.memory_operand_links.layer_to_mem_op(op))
            for lv, acc in zip(levels, per_level):
                name = lv.memory_instance.name
                e = {d: acc.get(d) * (lv.read_energy if d in (DataDirection.RD_OUT_TO_LOW,
                                                              DataDirection.RD_OUT_TO_HIGH)
                                      else lv.write_energy) for d in DataDirection}
                if name == "dram":
                    dram_pj += sum(e.values())
                elif name == "buffer" and str(op) == "O":
                    output_pj += sum(e.values())
                elif name == "buffer":
                    read_bits += acc.get(DataDirection.RD_OUT_TO_LOW) * PORT_BITS
                    read_pj += e[DataDirection.RD_OUT_TO_LOW] + e[DataDirection.RD_OUT_TO_HIGH]
                    fill_pj += e[DataDirection.WR_IN_BY_HIGH] + e[DataDirection.WR_IN_BY_LOW]
        out_bits = packed_bits(layer.outputs, store, store)
        rows.append(LayerComparison(
            name=layer.name, macs=layer.macs, zz_macs=int(cme.layer.total_mac_count),
            hwq_cycles=r.cycles, hwq_stream_cycles=m * folds, folds=folds,
            zz_ideal_temporal_cycles=float(cme.ideal_temporal_cycle),
            zz_latency0=float(cme.latency_total0), zz_latency2=float(cme.latency_total2),
            zz_spatial_utilization=float(cme.mac_spatial_utilization),
            hwq_compute_pj=r.energy_pj.compute, hwq_onchip_pj=r.energy_pj.onchip,
            hwq_offchip_pj=r.energy_pj.offchip,
            hwq_read_bits=r.energy_pj.onchip / cfg.energy.sram_pj_per_bit - out_bits,
            zz_mac_pj=float(cme.mac_energy), zz_read_bits=read_bits, zz_read_pj=read_pj,
            zz_output_pj=output_pj, zz_fill_pj=fill_pj, zz_dram_pj=dram_pj,
            perfect=(kh == kw == 1 and layer.in_channels % cfg.rows == 0
                     and layer.out_channels % cfg.cols == 0)))
    return rows
