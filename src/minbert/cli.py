"""The `minbert` command line: one sub-command per job, each a small function."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from collections.abc import Sequence

from minbert.errors import MinbertError


def cmd_info(args: argparse.Namespace) -> int:
    from minbert.model import BertModel
    from minbert.model.loading import resolve_model_dir

    directory = resolve_model_dir(args.model)
    model = BertModel.from_pretrained(directory)
    print(f"model: {directory}")
    print("config:")
    for field in dataclasses.fields(model.config):
        print(f"  {field.name:<30} {getattr(model.config, field.name)}")

    def count(module) -> int:
        return sum(p.numel() for p in module.parameters())

    per_layer = count(model.layers[0]) if len(model.layers) else 0
    print("parameters:")
    print(f"  {'embeddings':<30} {count(model.embeddings):>12,}")
    print(f"  {f'layers ({len(model.layers)} x {per_layer:,})':<30} {count(model.layers):>12,}")
    print(f"  {'pooler':<30} {count(model.pooler):>12,}")
    print(f"  {'total':<30} {model.num_parameters():>12,}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="minbert", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details")
    sub = parser.add_subparsers(dest="command", required=True)

    info = sub.add_parser("info", help="print a model's configuration and parameter counts")
    info.add_argument("--model", default=None, help="HF-layout model directory (default: embedded MiniLM)")
    info.set_defaults(run=cmd_info)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    try:
        return args.run(args)
    except MinbertError as exc:
        print(f"minbert: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
