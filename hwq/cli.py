"""The ``hwq`` command. Each subcommand is one function ``cmd_<name>(args)`` and one parser block
in ``build_parser``; add new subcommands the same way."""
from __future__ import annotations

import argparse
import os
import signal
import sys


def _input_size(text: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(d) for d in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--input-size {text!r}: expected comma-separated "
                                         "positive ints such as 1,3,224,224") from None
    if not dims or any(d <= 0 for d in dims):
        raise argparse.ArgumentTypeError(f"--input-size {text!r}: expected positive ints")
    return dims


def _spec(text: str):
    return None if text.lower() in ("none", "float") else text


def cmd_summary(args) -> int:
    import torchvision

    import hwq
    names = torchvision.models.list_models(module=torchvision.models)
    if args.model not in names:
        print(f"hwq summary: --model {args.model!r} is not a torchvision classification model; "
              f"accepted: {', '.join(sorted(names))}", file=sys.stderr)
        return 2
    kwargs = {"aux_logits": False, "init_weights": False} if args.model in ("googlenet",
                                                                            "inception_v3") else {}
    model = torchvision.models.get_model(args.model, weights=None, **kwargs)
    hwq.quantize(model, weights=_spec(args.weights), acts=_spec(args.acts),
                 plan=args.plan)
    hwq.summary(model, input_size=args.input_size)
    return 0


def _load_profile(text: str):
    """A profile JSON file, or the name of a shape-only workload."""
    import os

    import hwq
    if os.path.exists(text):
        return hwq.Profile.from_json(text)
    if text in hwq.workloads.NAMES:
        return hwq.workloads.build(text)
    raise ValueError(f"PROFILE {text!r} is neither a profile JSON file nor a workload; workloads: "
                     f"{', '.join(hwq.workloads.NAMES)}")


def cmd_map(args) -> int:
    import hwq
    from hwq._io import atomic_write_text
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise ValueError("--plot needs matplotlib, which is not installed: "
                             "pip install matplotlib") from None
    profile = _load_profile(args.profile)
    archs = list(hwq.hw.ARCHS) if args.arch == "all" else [a for a in args.arch.split(",") if a]
    if not archs:
        raise ValueError(f"--arch {args.arch!r} names no design: expected 'all' or comma-separated "
                         f"names from: {', '.join(hwq.hw.ARCHS)}")
    reports = [hwq.map(profile, a, baseline=args.baseline, config=args.config) for a in archs]
    if args.format == "json":  # a list of reports, each with its header (hwq.hw.read_reports)
        text = hwq.hw.reports_json(reports)
    elif args.format == "csv":
        text = hwq.hw.reports_csv(reports)
    else:
        text = "\n\n".join(r.table() for r in reports) + "\n"
    if args.output:
        atomic_write_text(args.output, text)
    else:
        sys.stdout.write(text)
    if args.plot:
        hwq.hw.plot(reports, args.plot)
    return 0


def _grid(args) -> dict:
    """--grid NAME=V1,V2,... (repeatable) and --grid-file TOML ({name = [values]}), or None."""
    from hwq.hw.sweep import parse_value
    grid = {}
    if args.grid_file:
        from hwq._io import read_toml
        data = read_toml(args.grid_file, "--grid-file")
        data = data.get("grid", data) if isinstance(data.get("grid"), dict) else data
        for k, v in data.items():
            grid[k] = v if isinstance(v, list) else [v]
    for item in args.grid or []:
        name, sep, values = item.partition("=")
        if not sep or not name.strip() or not values.strip():
            raise ValueError(f"--grid {item!r} is not accepted: expected NAME=V1,V2,... such as "
                             "rows=16,32,64")
        grid[name.strip()] = [parse_value(v) for v in values.split(",")]
    return grid or None


def _targets(items) -> dict:
    out = {}
    for t in items or []:
        name, sep, value = t.partition("=")
        if not sep:
            raise ValueError(f"--target {t!r} is not accepted: expected NAME=VALUE with NAME one "
                             "of fps, latency, energy, area (fps=3000, latency=2ms, energy=150uJ, "
                             "area=12mm2)")
        out[name.strip()] = value.strip()
    return out


def cmd_sweep(args) -> int:
    import hwq
    profiles = [_load_profile(p) for p in args.profile]
    grid = _grid(args)
    if grid is None and "," not in args.arch:  # several designs: each its own search space
        grid = dict(hwq.hw.get(args.arch).config.search_space)
        if not grid:
            raise ValueError(f"--arch {args.arch!r} has no default search space: give --grid or "
                             "--grid-file")
    objectives = [o for o in args.objectives.split(",") if o]
    r = hwq.sweep(profiles, args.arch, grid, sample=args.sample, n=args.n, seed=args.seed,
                  objectives=objectives, config=args.config)
    print(r.table())
    chosen = None
    try:
        chosen = r.pick(args.minimize, **_targets(args.target))
        print(f"chosen: point {chosen['point']} (" + (f"{chosen['arch']}: " if "arch" in chosen
                                                       else "")
              + ", ".join(f"{k}={chosen[k]}" for k in r.params if chosen[k] is not None) + ")")
    except ValueError as e:
        if args.target:
            raise
        print(f"no point chosen: {e}")
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        written = [os.path.join(args.out, f) for f in ("sweep.csv", "sweep.json")]
        r.to_csv(written[0])
        r.to_json(written[1])
        if not args.no_plots:
            try:
                import matplotlib  # noqa: F401
            except ImportError:
                print("plots skipped: matplotlib is not installed (pip install matplotlib)",
                      file=sys.stderr)
            else:
                written.append(os.path.join(args.out, "pareto.png"))
                r.plot_pareto(written[-1], chosen=chosen)
                if chosen is not None:  # on the first workload
                    written.append(os.path.join(args.out, "layers.png"))
                    r.plot_layers(written[-1], chosen)
        print("wrote " + ", ".join(written))
    return 0


def cmd_generate(args) -> int:
    import hwq
    profile = _load_profile(args.profile)
    targets = _targets(args.target)
    if not targets:
        raise ValueError("--target is required: fps=..., latency=..., energy=... or area=...")
    g = hwq.generate(profile, args.arch, targets, grid=_grid(args), minimize=args.minimize,
                     sample=args.sample, n=args.n, seed=args.seed, config=args.config)
    print(g.summary())
    out = args.out or f"generated_{args.arch}"
    paths = g.write(out)
    print("wrote " + ", ".join(paths))
    print(f"check: hwq map {args.profile} --arch {args.arch} --config "
          f"{os.path.join(out, 'config.toml')}")
    return 0


def cmd_profile(args) -> int:
    import torch

    import hwq
    from hwq._io import atomic_write_text
    if (args.workload is None) == (args.checkpoint is None):
        raise ValueError("give one of --workload NAME or --checkpoint PATH (with --model)")
    if args.batches < 0:
        raise ValueError(f"--batches {args.batches} is not accepted: expected a number of "
                         "batches >= 0")
    if args.workload is not None:
        profile = hwq.workloads.build(args.workload, w_bits=args.w_bits, a_bits=args.a_bits)
    else:
        import torchvision
        names = torchvision.models.list_models(module=torchvision.models)
        if args.model not in names:
            raise ValueError(f"--model {args.model!r} is not a torchvision classification model; "
                             f"accepted: {', '.join(sorted(names))}")
        kwargs = {"aux_logits": False, "init_weights": False} if args.model in (
            "googlenet", "inception_v3") else {}
        model = torchvision.models.get_model(args.model, weights=None, **kwargs)
        hwq.quantize(model, weights=_spec(args.weights), acts=_spec(args.acts), plan=args.plan)
        from hwq.train import checkpoint
        state = checkpoint.load(args.checkpoint)
        for key in ("model", "state_dict"):
            if isinstance(state.get(key), dict):
                state = state[key]
                break
        checkpoint.load_model_state(model, state, args.checkpoint)
        g = torch.Generator().manual_seed(0)
        example = torch.randn(args.input_size, generator=g)
        batches = [torch.randn(args.input_size, generator=g) for _ in range(args.batches)]
        profile = hwq.profile(model, example, batches=batches or None, name=args.model)
        if batches:  # say where the statistics come from: not a data set
            profile.meta["stats_inputs"] = "synthetic N(0, 1) batches of --input-size"
    text = {"json": profile.to_json, "csv": profile.to_csv, "dnnsim": profile.to_dnnsim,
            "table": lambda: str(profile) + "\n"}[args.format]()
    if args.output:
        atomic_write_text(args.output, text)
    else:
        sys.stdout.write(text)
    return 0


def _recipe(args):
    from hwq.train import recipe as recipes
    overrides = list(args.set or [])
    if args.data_dir is not None:
        overrides.append(("data.dir", args.data_dir))
    if args.download:
        overrides.append(("data.download", True))
    if args.device is not None:
        overrides.append(("train.device", args.device))
    if args.no_progress:
        overrides.append(("train.progress", False))
    return recipes.load(recipes.find(args.recipe), overrides)


def _names(text: str | None) -> list[str] | None:
    return None if text is None else [n.strip() for n in text.split(",") if n.strip()]


class _SecondInterruptExits:
    """Within: the first Ctrl-C raises KeyboardInterrupt as usual (the clean-up runs: logs are
    closed, finished checkpoints stay); a second one, during that clean-up, ends the process at
    once with exit status 130, whatever the clean-up is waiting for."""

    def __enter__(self):
        self.count, self.old = 0, None
        try:
            self.old = signal.signal(signal.SIGINT, self._handler)
        except ValueError:  # not the main thread: leave signals alone
            pass
        return self

    def _handler(self, signum, frame):
        self.count += 1
        if self.count > 1:
            os.write(2, b"\nhwq: interrupted twice: exiting now\n")
            os._exit(130)
        raise KeyboardInterrupt

    def __exit__(self, *exc):
        if self.old is not None:
            signal.signal(signal.SIGINT, self.old)


def cmd_train(args) -> int:
    from hwq.train import distributed, run
    recipe = _recipe(args)
    out = args.out or f"runs/{recipe['name']}"
    with _SecondInterruptExits():
        try:
            run(recipe, out, schemes=_names(args.schemes), resume=args.resume)
        except KeyboardInterrupt:
            print(f"\nhwq train: interrupted; the checkpoints of finished epochs are in {out}: "
                  "continue with --resume (a second Ctrl-C exits at once)", file=sys.stderr)
            return 130
        finally:
            distributed.teardown()  # torchrun: leave the process group cleanly
    return 0


def cmd_eval(args) -> int:
    """Test accuracy of a zoo entry, a zoo entry file or a ``hwq train`` checkpoint."""
    import torch

    import hwq

    from hwq import zoo
    from hwq.train import checkpoint, data as data_mod, engine
    from hwq.train.run import build_model
    target = args.target
    if target in zoo.names() or (target.endswith(".pt") and os.path.isfile(target)
                                 and _is_zoo_file(target)):
        meta = zoo.info(target)
        r = zoo.evaluate(target, args.data_dir, deploy=args.deploy, batch_size=args.batch_size)
        recorded = f"; recorded {meta['test_acc']:.2f}%" if "test_acc" in meta else ""
    else:
        if not os.path.isfile(target):
            raise ValueError(f"{target!r} is neither a zoo entry ({zoo.names()}) nor a file")
        run_dir = os.path.dirname(os.path.dirname(os.path.abspath(target)))
        scheme = os.path.basename(os.path.dirname(os.path.abspath(target)))
        recipe_path = os.path.join(run_dir, "recipe.json")
        if os.path.isfile(os.path.join(run_dir, scheme, "recipe.json")):  # exact for the scheme
            recipe_path = os.path.join(run_dir, scheme, "recipe.json")
        if not os.path.isfile(recipe_path):
            raise ValueError(f"checkpoint {target!r}: {recipe_path!r} does not exist: expected "
                             "OUT/<scheme>/last.pt of a hwq train run (or a zoo entry)")
        from hwq._io import read_json
        from hwq.train.recipe import section
        recipe = read_json(recipe_path, "recipe")  # not UTF-8 / not JSON: one line naming it
        d = section(recipe, "data")
        data = data_mod.datasets(d.name, args.data_dir or d.dir, cache_dir=d.cache_dir,
                                 subset=d.subset)
        model = build_model(recipe, scheme, data)
        checkpoint.load_model_state(model, checkpoint.load(target).get("model"), target)
        model.eval()
        if args.deploy:
            model = hwq.deploy(model)
        r = engine.evaluate(model, data.test, args.batch_size, torch.device("cpu"))
        recorded = ""
    kind = "deployed" if args.deploy else "QAT"
    print(f"{target} ({kind}): test accuracy {r['acc']:.2f}% (loss {r['loss']:.4f}){recorded}")
    return 0


def _is_zoo_file(path: str) -> bool:
    from hwq import zoo
    try:
        zoo.read(path)
    except ValueError:
        return False
    return True


def cmd_export(args) -> int:
    """A trained model (run folder, checkpoint or zoo name) -> a QONNX or ONNX QDQ file."""
    from hwq.export import export, source
    src = source.resolve(args.source, scheme=args.scheme, model_name=args.model,
                         weights=_spec(args.weights) if args.weights else None,
                         acts=_spec(args.acts) if args.acts else None, plan=args.plan,
                         num_classes=args.num_classes, input_size=args.input_size,
                         batch=args.batch, act=args.act, shortcut=args.shortcut)
    try:
        report = export(src.model, src.example_input, args.output, args.format,
                        int4=not args.no_int4, verify=not args.no_verify,
                        dynamic_batch=args.dynamic_batch)
    except ImportError as e:  # the export extra is not installed: one line, no traceback
        raise ValueError(str(e)) from None
    print(src.description)
    print(report.table())
    return 0


def _bits_list(text: str) -> list[int]:
    try:
        return [int(b) for b in text.split(",") if b.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--uniform-bits {text!r}: expected comma-separated "
                                         "ints such as 2,4,8") from None


def _candidate_bits(text: str) -> list[int]:
    try:
        return [int(b) for b in text.split(",") if b.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--bits {text!r}: expected comma-separated ints such "
                                         "as 2,4,8") from None


def cmd_search(args) -> int:
    with _SecondInterruptExits():
        return _search(args)


def _search(args) -> int:
    from hwq.search import runner
    from hwq.train.recipe import section
    recipe = _recipe(args)
    out = args.out or f"runs/{recipe['name']}"
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise ValueError("--plot needs matplotlib, which is not installed: "
                             "pip install matplotlib") from None
    if args.mode == "layerwise":
        runner.run_layerwise(recipe, out, args.scheme, args.tolerance, args.start, args.min_bits)
    elif args.mode == "budget":
        if not args.budget:
            raise ValueError("--mode budget needs --budget, e.g. --budget energy=0.5x")
        rep = section(recipe, "report")
        arch = args.arch or rep.arch
        config = args.config or (rep.config if arch == rep.arch else None)
        pin = args.pin.strip()
        pinned = None if pin.lower() == "none" else ("ends" if pin == "ends" else _names(pin))
        runner.run_budget(recipe, out, args.scheme, args.budget, arch, method=args.sensitivity,
                          iters=args.iters, bits=args.bits, pinned=pinned,
                          finetune_epochs=args.finetune, compare=_names(args.compare),
                          arch_config=config, like=args.like)
    else:
        rep = section(recipe, "report")  # the recipe's accelerator unless the command names one
        arch = args.arch or rep.arch
        config = args.config or (rep.config if arch == rep.arch else None)
        runner.run_energy(recipe, out, args.scheme, arch, args.target, args.tolerance,
                          args.uniform_bits, args.finetune, args.plot, arch_config=config)
    return 0


def _add_recipe_args(t: argparse.ArgumentParser) -> None:
    t.add_argument("recipe", nargs="?", default="digits",
                   help="recipe TOML file, or a shipped recipe name (default digits)")
    t.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a recipe key, e.g. --set optim.lr=0.01 (repeatable)")
    t.add_argument("--data-dir", default=None, help="folder of the data set (sets data.dir)")
    t.add_argument("--download", action="store_true",
                   help="download MNIST / CIFAR-10 into --data-dir if missing")
    t.add_argument("--device", default=None, help="auto, cpu, cuda or cuda:N (sets train.device)")
    t.add_argument("--no-progress", action="store_true", help="no progress bars")


def _add_grid_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--grid", action="append", metavar="NAME=V1,V2,...",
                   help="values of a config option to try (repeatable; default: the design's "
                        "search_space)")
    p.add_argument("--grid-file", default=None, help="TOML file of option = [values]")
    p.add_argument("--sample", choices=("grid", "random", "lhs"), default=None,
                   help="all grid points (default), or --n of them at random / Latin hypercube")
    p.add_argument("--n", type=int, default=None, help="points to sample")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    p.add_argument("--config", default=None, help="TOML file: options under every point")


def build_parser() -> argparse.ArgumentParser:
    from hwq.models.build import ACTS  # the activations models and recipes know, listed once
    from hwq.models.resnet_cifar import SHORTCUTS  # ResNet-20's block structures
    p = argparse.ArgumentParser(prog="hwq", description="hardware-aware quantization")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("summary", help="per-layer bits, MACs and memory of a quantized "
                                       "torchvision model")
    s.add_argument("--model", default="resnet18", help="torchvision model name (default resnet18)")
    s.add_argument("--weights", default="fixed:8", help="weight quantizer spec, or none")
    s.add_argument("--acts", default="fixed:8", help="activation quantizer spec, or none")
    s.add_argument("--plan", default=None, help="per-layer plan JSON applied after the defaults")
    s.add_argument("--input-size", type=_input_size, default=(1, 3, 224, 224))
    s.set_defaults(func=cmd_summary)

    m = sub.add_parser("map", help="cycles and energy of a profile on accelerator models")
    m.add_argument("profile", help="profile JSON file (hwq profile), or a workload name")
    m.add_argument("--arch", default="stripes", help="comma-separated names from hwq.hw.ARCHS, "
                                                     "or all (default stripes)")
    m.add_argument("--baseline", default="dadiannao", help="baseline design (default dadiannao)")
    m.add_argument("--config", default=None, help="TOML file: a [name] table of options per design")
    m.add_argument("--format", choices=("table", "json", "csv"), default="table")
    m.add_argument("-o", "--output", default=None, help="write here instead of stdout")
    m.add_argument("--plot", default=None, help="PNG of per-layer cycles and energy (matplotlib)")
    m.set_defaults(func=cmd_map)

    sw = sub.add_parser("sweep", help="cost a grid of one design's configurations on workloads: "
                                      "table, Pareto front, plots (docs/mapper.md)")
    sw.add_argument("profile", nargs="+", help="profile JSON file(s) or workload name(s)")
    sw.add_argument("--arch", required=True, help="a design from hwq.hw.ARCHS, or several "
                    "joined by commas (one table, one front; --grid DESIGN.FIELD=... for one)")
    _add_grid_args(sw)
    sw.add_argument("--objectives", default="latency_s,energy_pj,area_mm2",
                    help="Pareto objectives (default latency_s,energy_pj,area_mm2; also fps, "
                         "utilization, seconds, cycles, edp)")
    sw.add_argument("--target", action="append", metavar="NAME=VALUE",
                    help="pick the point meeting it: fps=, latency=, energy=, area= (repeatable)")
    sw.add_argument("--minimize", default=None, help="objective the chosen point minimizes "
                                                     "(default area_mm2)")
    sw.add_argument("-o", "--out", default=None, help="folder for sweep.csv, sweep.json, "
                                                      "pareto.png, layers.png")
    sw.add_argument("--no-plots", action="store_true", help="do not draw the plots")
    sw.set_defaults(func=cmd_sweep)

    ge = sub.add_parser("generate", help="the cheapest configuration of a design meeting a "
                                         "target: config TOML for hwq map --config, report "
                                         "(FINN: per-layer folding)")
    ge.add_argument("profile", help="profile JSON file or workload name")
    ge.add_argument("--arch", required=True, help="a design from hwq.hw.ARCHS")
    ge.add_argument("--target", action="append", metavar="NAME=VALUE",
                    help="fps=3000, latency=2ms, energy=150uJ or area=12mm2 (repeatable)")
    ge.add_argument("--minimize", default=None, help="what cheapest means (default area_mm2; "
                                                     "latency_s when area is a target)")
    _add_grid_args(ge)
    ge.add_argument("-o", "--out", default=None, help="output folder (default generated_ARCH)")
    ge.set_defaults(func=cmd_generate)

    pr = sub.add_parser("profile", help="a precision profile from a workload or a checkpoint")
    pr.add_argument("--workload", default=None, help="shape-only network: alexnet, nin, "
                    "googlenet, vgg_m, vgg_s, vgg19, resnet18, resnet50, mobilenet_v2")
    pr.add_argument("--w-bits", type=int, default=16, help="workload weight bits (default 16)")
    pr.add_argument("--a-bits", type=int, default=16, help="workload activation bits (default 16)")
    pr.add_argument("--checkpoint", default=None, help="state_dict file of a quantized "
                    "torchvision model (a dict with 'model' or 'state_dict' is accepted)")
    pr.add_argument("--model", default="resnet18", help="torchvision model of the checkpoint")
    pr.add_argument("--weights", default="fixed:8", help="weight quantizer spec used in training")
    pr.add_argument("--acts", default="fixed:8", help="activation quantizer spec used in training")
    pr.add_argument("--plan", default=None, help="per-layer plan JSON used in training")
    pr.add_argument("--input-size", type=_input_size, default=(1, 3, 224, 224))
    pr.add_argument("--batches", type=int, default=0, help="synthetic batches for run-time "
                    "statistics (default 0: none)")
    pr.add_argument("--format", choices=("json", "csv", "dnnsim", "table"), default="json")
    pr.add_argument("-o", "--output", default=None, help="write here instead of stdout")
    pr.set_defaults(func=cmd_profile)

    t = sub.add_parser("train", help="train a recipe's schemes (float and quantized); print "
                                     "accuracies, write profiles and accelerator reports")
    _add_recipe_args(t)
    t.add_argument("--out", default=None, help="folder for checkpoints, logs, profiles and "
                                               "reports (default runs/<recipe name>)")
    t.add_argument("--schemes", default=None, help="comma-separated scheme names (default all)")
    t.add_argument("--resume", action="store_true",
                   help="continue from the checkpoints in --out")
    t.set_defaults(func=cmd_train)

    ev = sub.add_parser("eval", help="re-measure the test accuracy of a zoo entry or a hwq "
                                     "train checkpoint")
    ev.add_argument("target", help="zoo name (e.g. cifar10/resnet20-w4a4), zoo entry file, or "
                                   "OUT/<scheme>/last.pt of a hwq train run")
    ev.add_argument("--data-dir", required=True, help="the data set's folder (image folder with "
                    "train/ and test/, or torchvision's files)")
    ev.add_argument("--batch-size", type=int, default=500, help="test batch size (default 500)")
    ev.add_argument("--deploy", action="store_true", help="evaluate hwq.deploy(model): the "
                    "packed kernels instead of the QAT model")
    ev.set_defaults(func=cmd_eval)

    se = sub.add_parser("search", help="per-layer precision search (layerwise) or accuracy-"
                                       "energy Pareto front (energy) on a trained scheme")
    _add_recipe_args(se)
    se.add_argument("--out", default=None, help="the folder hwq train wrote (default "
                                                "runs/<recipe name>); results go to OUT/search")
    se.add_argument("--scheme", default="float", help="trained scheme to start from "
                                                      "(default float)")
    se.add_argument("--mode", choices=("layerwise", "energy", "budget"), default="layerwise")
    se.add_argument("--tolerance", type=float, default=1.0,
                    help="accuracy loss accepted, in points (default 1.0)")
    se.add_argument("--start", type=int, default=16, help="layerwise: starting bits (default 16)")
    se.add_argument("--min-bits", type=int, default=2, help="layerwise: lowest bits (default 2)")
    se.add_argument("--arch", default=None, help="energy, budget: accelerator model (default: "
                                                 "the recipe's report.arch)")
    se.add_argument("--config", default=None, help="energy, budget: TOML file of the arch's "
                                                   "options (default: the recipe's report.config)")
    se.add_argument("--target", type=float, default=None, help="energy: accuracy target in %% "
                    "(default: the trained model's accuracy minus --tolerance)")
    se.add_argument("--uniform-bits", type=_bits_list, default=[2, 3, 4, 6, 8, 16],
                    help="energy: bit widths of the uniform candidates (default 2,3,4,6,8,16)")
    se.add_argument("--finetune", type=int, default=0,
                    help="energy, budget: epochs of fine-tuning per candidate (default 0: "
                         "post-training)")
    se.add_argument("--plot", default=None, help="energy: PNG of the Pareto front (matplotlib)")
    se.add_argument("--budget", action="append", metavar="METRIC=VALUE",
                    help="budget: energy|latency|size|bops = 0.5x (of uniform 8-bit), w4a4 (of "
                         "that uniform plan), or absolute uJ / ms / MB / count (repeatable)")
    se.add_argument("--sensitivity", choices=("hutchinson", "fisher", "loss"),
                    default="hutchinson",
                    help="budget: Hessian trace (Hutchinson), empirical Fisher, or the measured "
                         "loss rise of each layer, role and bit width (one forward each)")
    se.add_argument("--iters", type=int, default=16,
                    help="budget: Hutchinson estimates per batch (default 16)")
    se.add_argument("--bits", type=_candidate_bits, default=[2, 3, 4, 6, 8],
                    help="budget: candidate weight and activation bits (default 2,3,4,6,8)")
    se.add_argument("--pin", default="ends", help="budget: layers kept at 8 bits: ends (first "
                    "and last, default), none, or comma-separated names")
    se.add_argument("--compare", default=None, help="budget: uniform plans fine-tuned and "
                    "evaluated alongside, e.g. w4a4 (pinned layers kept)")
    se.add_argument("--like", default=None, help="budget: a recipe scheme whose quantizers "
                    "(bits set per layer) and fine-tuning optimizer/schedule are used (default: "
                    "fixed:b and the --scheme's)")
    se.set_defaults(func=cmd_search)

    ex = sub.add_parser("export", help="write a trained model as QONNX (FINN, qonnx) or ONNX QDQ "
                                       "(onnxruntime); see docs/export.md")
    ex.add_argument("source", help="a hwq train run folder, a checkpoint file (with --model ...), "
                                   "or a zoo name")
    ex.add_argument("-o", "--output", required=True, help="the .onnx file to write")
    ex.add_argument("--format", choices=("qonnx", "qdq"), default="qonnx")
    ex.add_argument("--scheme", default=None, help="run folder: the scheme to export (needed when "
                                                   "several were trained)")
    ex.add_argument("--model", default=None, help="checkpoint: model name (hwq.models: digits_cnn, "
                                                  "lenet5, resnet20, cnv, resnet18, mobilenet_v2)")
    ex.add_argument("--weights", default=None, help="checkpoint: weight quantizer spec used in "
                                                    "training (default none = float)")
    ex.add_argument("--acts", default=None, help="checkpoint: activation quantizer spec used in "
                                                 "training (default none = float)")
    ex.add_argument("--plan", default=None, help="checkpoint: per-layer plan JSON used in training")
    ex.add_argument("--act", choices=tuple(ACTS), default="relu",
                    help="checkpoint: the model's activation function (default relu; BNNs: "
                         "hardtanh)")
    ex.add_argument("--shortcut", choices=SHORTCUTS, default=None,
                    help="checkpoint, resnet20: block structure (default pair, He et al.; every: "
                         "Bi-Real Net)")
    ex.add_argument("--num-classes", type=int, default=10, help="checkpoint: classes (default 10)")
    ex.add_argument("--input-size", type=_input_size, default=None,
                    help="input shape with batch, e.g. 1,3,32,32 (checkpoint: required; run "
                         "folder: replaces the test images by noise of this shape)")
    ex.add_argument("--batch", type=int, default=1, help="run folder: test images in the example "
                                                         "input (default 1; the QONNX file keeps "
                                                         "this batch size)")
    ex.add_argument("--no-int4", action="store_true", help="qdq: 4-bit codes as int8/uint8 with a "
                                                           "Clip instead of int4/uint4")
    ex.add_argument("--dynamic-batch", action="store_true", help="qdq: symbolic batch dimension")
    ex.add_argument("--no-verify", action="store_true", help="do not run the file with "
                                                             "onnxruntime / qonnx before writing it")
    ex.set_defaults(func=cmd_export)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ValueError as e:  # bad specs, plans, shapes: one clear line, no traceback
        print(f"hwq {args.command}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a missing, unreadable or unwritable path: name it, no traceback
        where = f"{e.filename}: " if e.filename else ""
        print(f"hwq {args.command}: error: {where}{e.strerror or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\nhwq {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
