"""The ``hwq`` command. Each subcommand is one function ``cmd_<name>(args)`` and one parser block
in ``build_parser``; add new subcommands the same way."""
from __future__ import annotations

import argparse
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


def build_parser() -> argparse.ArgumentParser:
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
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ValueError as e:  # bad specs, plans, shapes: one clear line, no traceback
        print(f"hwq {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
