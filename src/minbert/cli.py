"""The `minbert` command line: one sub-command per job, each a small function."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from minbert.errors import MinbertError
from minbert.interrupts import STOP, Interrupted

if TYPE_CHECKING:
    from minbert.data.files import FileFormat
    from minbert.predictor import MultitaskBERT
    from minbert.tasks.kinds import TaskKind


def cmd_info(args: argparse.Namespace) -> int:
    from minbert.model import BertModel
    from minbert.model_dir import resolve_model_dir

    directory = resolve_model_dir(args.model, args.revision)
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


def cmd_data(args: argparse.Namespace) -> int:
    import errno
    import json

    from minbert.data.files import read_examples
    from minbert.data.formats import CheckedFile
    from minbert.data.spec import FORMATS, KNOWN_FILES, resolve_data_dir
    from minbert.outputs import special_kind

    # what to check: the built-in data sets' files, or a config's tasks (their own specs and file choices), each
    # read by its spec's format unit; a tagging spec's files are checked against the label set of its train file
    def hub_reader(spec: object, split: str, task: str) -> Callable:
        from minbert.data.hub import read_hub_split

        return lambda path, labelled, strict, tags, keep: read_hub_split(
            spec, split, f"tasks.{task}.data", labelled, strict, f"tasks.{task}.{split}", tags, keep)

    def reader(file_format: object) -> Callable:
        return lambda path, labelled, strict, tags, keep: read_examples(path, file_format, labelled=labelled,
                                                                         strict=strict)

    files = [(name, reader(FORMATS[data]), split, data) for (data, split), name in KNOWN_FILES.items()]
    config = None
    if args.config or args.overrides:
        from minbert.data.spec import resolve_spec
        from minbert.training.config import load_config
        from minbert.training.experiment import task_file

        config = load_config(args.config, args.overrides)
        specs = {task: resolve_spec(task_config.data, f"tasks.{task}.data")
                 for task, task_config in config.tasks.items()}
        files = [(name, hub_reader(specs[task], name, task) if specs[task].hub else specs[task].read, split, task)
                 for task in config.tasks for split in ("train", "dev", "test")
                 if (name := task_file(config, task, split))]
    tags: dict[str, tuple[str, ...]] = {}  # per task: the label set read from its train file
    directory = resolve_data_dir(args.data_dir or (config.data_dir if config else None) or None,
                                 needed=config is None or not all(spec.hub for spec in specs.values()))
    report = {}
    for name, read, split, task in files:
        path = directory / name
        if config is not None and specs[task].hub:  # a split of a Hub data set, in huggingface_hub's cache
            name = f"{specs[task].hub}:{name}"
        elif not path.exists():
            if path.is_symlink():  # a dangling link or a loop: the file is meant to be there and cannot be read
                reason = os.strerror(errno.ENOENT)
                try:
                    path.stat()
                except OSError as exc:
                    reason = exc.strerror or reason
                report[name] = {"rows": 0, "skipped": [], "error": f"a symlink that cannot be read ({reason}: "
                                f"{os.readlink(path)})"}
            elif config is not None and split != "test":  # a config's train and dev files are required
                report[name] = {"rows": 0, "skipped": [], "error": "no such file"}
            continue
        elif kind := special_kind(path):  # a FIFO would block the check and a device never end it: never opened
            report[name] = {"rows": 0, "skipped": [], "error": f"{kind}, not a regular file"}
            continue
        # keep=False: a format that reads by rows counts them rather than keeping them (a file larger than memory)
        loaded = read(path, labelled=split != "test", strict=args.strict, tags=tags.get(task, ()), keep=False)
        if split == "train" and config is not None:
            tags[task] = specs[task].train_tags(loaded)
        counted = isinstance(loaded, CheckedFile)
        report[name] = {"rows": loaded.rows if counted else len(loaded.examples),
                        "skipped": [{"line": s.line, "reason": s.reason} | ({"where": s.where} if s.where else {})
                                    for s in loaded.skipped]}
        if counted and loaded.bad_rows > len(loaded.skipped):  # the rest counted, not listed
            report[name]["skipped_total"] = loaded.bad_rows
        if not report[name]["rows"]:  # training or scoring on it would fail; predicting for it writes nothing
            report[name]["error"] = "no data rows"
    if not report:
        print(f"minbert: no known data files in {directory}", file=sys.stderr)
        return 2
    failed = any("error" in entry for entry in report.values())
    if args.json:
        print(json.dumps(report, indent=2))
        return 1 if failed else 0
    print(f"data directory: {directory}")
    for name, entry in report.items():
        error = f"  <- error: {entry['error']}" if "error" in entry else ""
        bad = entry.get("skipped_total", len(entry["skipped"]))
        print(f"  {name:<30} {entry['rows']:>7,} rows loaded, {bad} skipped{error}")
        for skipped in entry["skipped"]:
            print(f"      {skipped.get('where') or 'line ' + str(skipped['line'])}: {skipped['reason']}")
        if bad > len(entry["skipped"]):
            print(f"      ... and {bad - len(entry['skipped']):,} more bad rows (the first {len(entry['skipped'])} "
                  "listed)")
    return 1 if failed else 0


QUICK = ["train.max_train_examples=600", "train.max_eval_examples=300", "train.epochs=1", "train.stage_epoch_limit=1"]


def cmd_train(args: argparse.Namespace) -> int:
    from minbert.runs.run import train_run
    from minbert.training.config import default_config_path, load_config

    if args.resume:
        if args.config or args.overrides or args.quick or args.fork:
            raise MinbertError("--resume continues a run with its own config: drop --config, --quick, --fork and "
                               "overrides")
        run_dir = Path(args.resume)
        if not (run_dir / "config.toml").exists():
            raise MinbertError(f"{run_dir}: not a run directory (no config.toml)")
        train_run(load_config(run_dir / "config.toml"), data_dir=args.data_dir, strict=args.strict, resume=run_dir)
        return 0
    overrides = list(args.overrides)
    if args.fork:  # a new run from another run's checkpoint: that run's config unless --config says otherwise
        if args.quick:
            raise MinbertError("--fork continues another run's training: drop --quick")
        checkpoint = Path(args.fork)
        parent_config = checkpoint.parent.parent / "config.toml"
        if not args.config and not parent_config.exists():
            raise MinbertError(f"--fork {checkpoint}: not a checkpoint of a run directory (no {parent_config}); "
                               "name the run's config with --config")
        config = load_config(args.config or parent_config, overrides)
        train_run(config, data_dir=args.data_dir, overwrite=args.overwrite, strict=args.strict, fork=checkpoint)
        return 0
    if args.quick:  # a first look: the same pipeline on a small subsample, in its own run directory
        config = load_config(args.config or default_config_path(), overrides)
        overrides = [*QUICK, f"name={config.name}-quick", *overrides]
    config = load_config(args.config or default_config_path(), overrides)
    train_run(config, data_dir=args.data_dir, overwrite=args.overwrite, strict=args.strict)
    return 0


def backend_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", choices=("torch", "onnx"), default="torch",
                        help="torch: the run's checkpoint (default); onnx: its ONNX export, run by ONNX Runtime")
    parser.add_argument("--onnx", default=None, metavar="DIR",
                        help="with --backend onnx: the export's directory (default: RUN/onnx)")


def precision_flag(parser: argparse.ArgumentParser) -> None:
    from minbert.device import INFERENCE_PRECISIONS

    parser.add_argument("--precision", choices=INFERENCE_PRECISIONS, default=None,
                        help="override the run's precision (int8: quantized encoder weights, CPU only)")


def cmd_evaluate(args: argparse.Namespace) -> int:
    from minbert.runs.run import evaluate_run, write_run_outputs

    evaluate_run(args.run, data_dir=args.data_dir, precision=args.precision, backend=args.backend,
                 onnx_dir=args.onnx)
    if args.write_outputs:
        write_run_outputs(args.run, data_dir=args.data_dir)
        print(f"wrote predictions/, figures/ and final_dev in metrics.json under {args.run}")
    return 0


def read_prediction_input(path: str, task_format: FileFormat, skip_bad_rows: bool = False
                          ) -> tuple[list[str], list[tuple[str, ...]], list]:
    """A file in the task's own format (a header naming its text columns, its delimiter and quoting; ids from its
    id column, else line numbers), or plain lines: a sentence, or `a<TAB>b` for pairs, named by line number.
    Malformed rows stop the job unless `skip_bad_rows`; returns ids, rows and the skipped rows."""
    from minbert.data.files import FileFormat, parse_examples
    from minbert.outputs import STANDARD_STREAM, check_input_file

    columns = task_format.text_columns
    if path == STANDARD_STREAM:
        path, raw = "standard input", sys.stdin.buffer.read()
    else:
        try:
            raw = check_input_file(path, "--input", stdin_too=True).read_bytes()
        except OSError as exc:
            raise MinbertError(f"{path}: cannot read ({exc.strerror})") from None
    first = raw.split(b"\n", 1)[0].decode("utf-8", errors="replace").removeprefix("\ufeff")
    header = [h.strip().strip('"') for h in first.split(task_format.delimiter)]
    if all(c in header for c in columns):
        id_column = next((c for c in (task_format.id_column, "id") if c and c in header), "")
        fmt = FileFormat(columns, "", id_column=id_column, delimiter=task_format.delimiter,
                         quoting=task_format.quoting)
        loaded = parse_examples(raw, Path(path), fmt, labelled=False)
    else:  # plain lines: quotes are text, and line 1 is the first example
        fmt = FileFormat(columns, "", id_column="", quoting=False)
        loaded = parse_examples("\t".join(columns).encode() + b"\n" + raw, Path(path), fmt, labelled=False,
                                header_line=0, blank_lines_are_rows=True)
    if loaded.skipped and not skip_bad_rows:
        first_bad = loaded.skipped[0]
        lines = ", ".join(str(s.line) for s in loaded.skipped[:20]) + (", ..." if len(loaded.skipped) > 20 else "")
        raise MinbertError(f"{path}:{first_bad.line}: {first_bad.reason}; {len(loaded.skipped)} malformed rows in "
                           f"all (lines {lines}): fix them, or pass --skip-bad-rows to predict the others")
    if not loaded.examples:
        raise MinbertError(f"{path}: no rows to predict" + (f" ({len(loaded.skipped)} malformed rows skipped)"
                                                             if loaded.skipped else ""))
    ids = [e.id if fmt.id_column else str(e.line) for e in loaded.examples]
    return ids, [e.texts for e in loaded.examples], loaded.skipped


def cmd_predict(args: argparse.Namespace) -> int:
    from minbert.evaluation.predictions import write_predictions
    from minbert.outputs import STANDARD_STREAM, check_input_file, check_output_file
    from minbert.predictor import MultitaskBERT

    if args.output:
        check_output_file(args.output)
    if args.input and args.input != STANDARD_STREAM:  # before the model loads
        check_input_file(args.input, "--input", stdin_too=True)
    predictor = MultitaskBERT.load(args.run, args.precision, args.backend, args.onnx)
    task = predictor.resolve_task(args.task, sentiment=args.task is None)
    kind = predictor.model.heads[task].kind
    # the examples in the kind's natural form: --text (and the free arguments), --question, --context, --choice
    given = {"--text": [*(args.text or []), *args.texts], "--question": args.question or [],
             "--context": args.context or [], "--choice": args.choice or []}
    kind.check_flags(given)  # a flag the kind does not take: one line, before any prediction
    if not kind.spec.rows:  # words, questions or choices: a file in the task's data format, or the natural form
        if args.input:
            return predict_format_file(args, predictor, task, kind)
        return predict_natural(args, predictor, task, kind, given)
    skipped = []
    if args.input:
        ids, rows, skipped = read_prediction_input(args.input, kind.format, args.skip_bad_rows)
    else:
        rows = kind.predict_rows(given)
        ids = [str(i + 1) for i in range(len(rows))]
    predictions = predictor.predict(task, rows)
    shown = [kind.written(p) for p in predictions]
    count = f"{len(shown)} prediction{'s' if len(shown) != 1 else ''}"
    note = f" ({len(skipped)} malformed rows skipped: see the warnings above)" if skipped else ""
    if args.output:
        write_predictions(args.output, kind.prediction_header, ids, shown)
        if args.output == STANDARD_STREAM:  # the file's lines are the output: the count goes beside them
            print(f"{count}{note}", file=sys.stderr)
        else:
            print(f"wrote {count} to {args.output}{note}")
    else:
        for row, prediction in zip(rows, shown, strict=True):
            print("\t".join([str(prediction), *row]))
        if args.input:
            print(f"{count}{note}", file=sys.stderr)
    return 0


def predict_format_file(args: argparse.Namespace, predictor: MultitaskBERT, task: str, kind: TaskKind) -> int:
    """`predict --input FILE` for a task whose data is not sentence rows: the file in the task's data format (a
    CoNLL file for a tagging task, its tag column optional), its predictions in the kind's prediction file layout
    (standard output without --output)."""
    from minbert.outputs import STANDARD_STREAM

    name = kind.spec.format.name
    if args.input == STANDARD_STREAM:
        raise MinbertError(f"task {task} ({kind.described}) predicts a file in its data format {name!r}: give "
                           f"--input FILE (standard input is for sentence tasks), or "
                           f"{' with '.join(kind.predict_flags)}")
    loaded = kind.spec.read(args.input, labelled=False, strict=not args.skip_bad_rows, what="--input",
                            tags=kind.spec.tag_labels)
    if not loaded.examples:
        raise MinbertError(f"{args.input}: nothing to predict")
    predictions = predictor.outputs(task, loaded.examples, soft=False)
    kind.write_predictions(Path(args.output or STANDARD_STREAM), loaded.examples, predictions)
    count = f"{len(loaded.examples)} prediction{'s' if len(loaded.examples) != 1 else ''}"
    note = f" ({len(loaded.skipped)} malformed rows skipped: see the warnings above)" if loaded.skipped else ""
    if args.output and args.output != STANDARD_STREAM:
        print(f"wrote {count} to {args.output}{note}")
    else:
        print(f"{count}{note}", file=sys.stderr)
    return 0


def predict_natural(args: argparse.Namespace, predictor: MultitaskBERT, task: str, kind: TaskKind,
                    given: dict[str, list[str]]) -> int:
    """`predict` of examples given by flags in the kind's natural form (a text to tag: --text; a question over a
    context: --question with --context; a question and its choices: --question with --choice, repeated), answered
    as `serve` answers them and printed as the kind prints an answer (tagging: a line per entity with its characters
    in the text)."""
    from minbert.outputs import STANDARD_STREAM, check_output_file, write_output_text

    rows = kind.predict_rows(given)
    answers = predictor.answers(task, rows)
    text = "".join(f"{line}\n" for number, answer in enumerate(answers, start=1)
                   for line in kind.answer_lines(number, answer))
    count = f"{len(rows)} example{'s' if len(rows) != 1 else ''} predicted"
    if args.output and args.output != STANDARD_STREAM:
        write_output_text(check_output_file(args.output), text)
        print(f"wrote {count} to {args.output}")
    else:
        sys.stdout.write(text)
        print(count, file=sys.stderr)
    return 0


def seed_list(text: str) -> list[int]:
    """`--seeds 11711,1,2` -> [11711, 1, 2]."""
    try:
        return [int(s) for s in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def positive_ints(text: str) -> list[int]:
    """`--clients 1,8,32`: whole numbers >= 1 (0 or -3 clients would measure nothing and print nan)."""
    try:
        values = [int(s) for s in text.split(",")]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers >= 1, got {text!r}")
    return values


def positive_int(text: str) -> int:
    """A whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def finite_number(low: float, low_allowed: bool):
    """A type for a finite number above `low` (or from it, with `low_allowed`)."""
    import math

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value < low or (value == low and not low_allowed):
            raise argparse.ArgumentTypeError(f"expected a finite number {'>=' if low_allowed else '>'} {low:g}, "
                                             f"got {text!r}")
        return value

    return parse


def backend_list(text: str) -> list[str]:
    backends = text.split(",")
    if not set(backends) <= {"torch", "onnx"}:
        raise argparse.ArgumentTypeError(f"expected torch or onnx, comma-separated, got {text!r}")
    return backends


def cmd_ablate(args: argparse.Namespace) -> int:
    from minbert.runs.ablation import run_ablation

    out = run_ablation(args.sweep, data_dir=args.data_dir, budget=args.budget, seeds=args.seeds, jobs=args.jobs,
                       overrides=args.overrides)
    print((out / "ablation.md").read_text(encoding="utf-8"))
    print(f"table: {out / 'ablation.md'}, chart: {out / 'ablation.png'}")
    return 0


def cmd_ensemble(args: argparse.Namespace) -> int:
    from minbert.names import check_name
    from minbert.runs.ensemble import ensemble_run

    check_name(args.name, "--name")
    run_dir = ensemble_run(args.runs, args.name, args.output_dir, args.data_dir, args.overwrite, args.weights)
    print((run_dir / "members.md").read_text(encoding="utf-8"))
    print(f"ensemble: {run_dir} (predictions/, figures/, metrics.json)")
    return 0


def cmd_soup(args: argparse.Namespace) -> int:
    from minbert.names import check_name
    from minbert.runs.soup import soup_run

    check_name(args.name, "--name")
    run_dir = soup_run(args.runs, args.name, args.output_dir, "greedy" if args.greedy else "uniform", args.data_dir,
                       args.overwrite)
    print((run_dir / "soup.md").read_text(encoding="utf-8"))
    print(f"soup: {run_dir} (best/, predictions/, figures/, metrics.json)")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from minbert.outputs import STANDARD_STREAM
    from minbert.reporting.report import write_report

    path = write_report(args.runs, args.output)
    if args.output != STANDARD_STREAM:  # with -, standard output holds the page alone
        print(f"report: {path}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import os

    # OpenMP's workers spin about 3 ms after each operation by default, starving the event loop that reads requests
    # on the same cores; asleep at once (OMP_WAIT_POLICY=PASSIVE, before issue 46) they pay a wake-up at each of a
    # forward pass's ~100 parallel regions. A short spin (about 0.1 ms) spans the gaps inside a forward pass and
    # sleeps soon after it. Read once, when torch loads, so set before that; a user's OMP_WAIT_POLICY is kept.
    if "OMP_WAIT_POLICY" not in os.environ:
        os.environ.setdefault("GOMP_SPINCOUNT", "10000")
    # the tokenizer encodes on the worker thread itself: its own thread pool would be a hand-off per batch, and its
    # idle threads would compete with OpenMP's for the two cores
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from minbert.serving.app import Batching, Limits, serve

    limits = Limits(args.max_texts, args.max_chars, args.timeout, args.max_body_bytes)
    serve(args.run, args.host, args.port, limits, Batching(args.max_batch, args.max_wait_ms), args.precision,
          args.backend, args.onnx, args.timeline)
    return 0


def cmd_loadtest(args: argparse.Namespace) -> int:
    from minbert.outputs import STANDARD_STREAM, check_output_file, write_output_text
    from minbert.serving.loadtest import load_test, table

    if args.output:
        check_output_file(args.output)
    results = load_test(args.run, args.clients, args.requests, args.time_limit, max_batch=args.max_batch,
                        max_wait_ms=args.max_wait_ms, backends=args.backends, timeline=args.timeline)
    text = table(results)
    print(text)
    if args.output and args.output != STANDARD_STREAM:  # with -, the table printed above is the output
        write_output_text(args.output, text)
    return 1 if any(level.failed for r in results for level in r.levels) else 0


def cmd_export(args: argparse.Namespace) -> int:
    import json

    from minbert.export import EXPORT_FORMATS, ExportSource, write_export
    from minbert.options import build
    from minbert.predictor import MultitaskBERT
    from minbert.training.config import parse_override

    unit = EXPORT_FORMATS.lookup(args.format, "--format")
    settings = [a for a in args.rest if "=" in a and not Path(a).exists()]
    places = [a for a in args.rest if a not in settings]
    if len(places) > 1:
        raise MinbertError(f"export writes one directory; got {', '.join(places)}")
    values: dict = {}
    for text in settings:
        path, value = parse_override(text)
        values[".".join(path)] = value
    if args.task:
        values["task"] = args.task
    options = build(EXPORT_FORMATS.options_of(args.format), values, f"--format {args.format}")
    run = Path(args.run)
    directory = Path(places[0]) if places else run / args.format
    loaded = MultitaskBERT.load(run, precision="fp32")
    loaded.model.to("cpu").float().eval()
    source = ExportSource(run, loaded.config, loaded.model, run / "best")
    summary = write_export(unit(), options, source, directory, args.format, args.overwrite)
    print(f"wrote {directory} ({args.format}): {json.dumps(summary)}")
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    from minbert.tuning.study import tune

    directory = tune(args.search, args.trials, args.timeout, args.jobs, args.storage, args.study, args.output_dir,
                     args.data_dir)
    print((directory / "trials.md").read_text(encoding="utf-8"))
    print(f"study: {directory} (trials.md, trials.csv, best.toml, figures/, trials/)")
    return 0


GPU_BENCH_FLAGS = ("--device", "--batch-size", "--seq-length", "--warmup-steps", "--layers", "--hidden", "--heads",
                   "--peak-tflops")


def cmd_bench(args: argparse.Namespace) -> int:
    from minbert.bench import print_report, run_bench, write_report
    from minbert.errors import ConfigError
    from minbert.outputs import check_output_file

    if args.output:
        check_output_file(args.output)
    gpu_flags = {flag: getattr(args, flag.removeprefix("--").replace("-", "_")) for flag in GPU_BENCH_FLAGS}
    if not args.gpu:
        if given := [flag for flag, value in gpu_flags.items() if value is not None]:
            raise ConfigError(f"{given[0]}: a GPU bench option, given without --gpu")
        report = run_bench(args.data_dir, steps=20 if args.steps is None else args.steps, run_dir=args.run,
                           job_steps=args.job_steps)
    else:
        from minbert.bench import gpu_bench, print_gpu_report

        if args.run or args.job_steps:
            raise ConfigError(f"{'--run' if args.run else '--job-steps'}: not with --gpu (the GPU bench trains "
                              "random weights)")
        options = {flag.removeprefix("--").replace("-", "_"): value for flag, value in gpu_flags.items()
                   if value is not None}
        report = gpu_bench(**options, **({} if args.steps is None else {"steps": args.steps}))
    if args.json:
        import json

        print(json.dumps(report, indent=2))
    elif args.gpu:
        print_gpu_report(report)
    else:
        print_report(report)
    if args.output:
        write_report(report, args.output)
    return 0


def batching_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--max-batch", type=positive_int, default=64,
                        help="texts per model call; 1 serves one text at a time (default: 64)")
    parser.add_argument("--max-wait-ms", type=finite_number(0, low_allowed=True), default=5.0,
                        help="how long a text waits for others to share its model call (default: 5)")
    parser.add_argument("--timeline", action="store_true",
                        help="record where each request's time goes (a Server-Timing header on every answer)")


def build_parser() -> argparse.ArgumentParser:
    from minbert import __version__
    from minbert.allocator import active_allocator

    parser = argparse.ArgumentParser(prog="minbert", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details")
    parser.add_argument("--version", action="version", version=f"minbert {__version__} (malloc: {active_allocator()})")
    sub = parser.add_subparsers(dest="command", required=True)

    info = sub.add_parser("info", help="print a model's configuration and parameter counts")
    info.add_argument("--model", default=None,
                      help="HF-layout model directory or Hugging Face Hub name (default: embedded MiniLM)")
    info.add_argument("--revision", default=None, help="a Hub model's branch, tag or commit (default: main)")
    info.set_defaults(handler=cmd_info)

    def data_dir_flag(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data-dir", default=None,
                       help="data directory (default: $MINBERT_DATA, then ./data, then ../shared/data)")

    data = sub.add_parser("data", help="validate every known data file (or a config's tasks' files) and report "
                          "skipped rows")
    data_dir_flag(data)
    data.add_argument("--config", default=None, help="check this config's tasks: their data specs and files")
    data.add_argument("overrides", nargs="*", help="key=value overrides of the config")
    data.add_argument("--json", action="store_true", help="print {file: {rows, skipped: [{line, reason}]}}")
    data.add_argument("--strict", action="store_true", help="stop at the first bad row")
    data.set_defaults(handler=cmd_data)

    train = sub.add_parser("train", help="train a run from a TOML config plus key=value overrides")
    train.add_argument("--config", default=None, help="TOML config file (default: configs/multitask.toml)")
    train.add_argument("--quick", action="store_true",
                       help=f"a small subsample for a first look ({' '.join(QUICK)})")
    train.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. train.lr=2e-5 tasks.sst.dropout=0.1")
    data_dir_flag(train)
    train.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    train.add_argument("--resume", default=None, metavar="RUN_DIR", help="continue a run from its newest checkpoint")
    train.add_argument("--fork", default=None, metavar="CHECKPOINT",
                       help="a new run (its own name and seed) from another run's checkpoint taken at an epoch's end "
                            "(RUN/checkpoints/step-N), with that run's config unless --config is given: forks of "
                            "one checkpoint share their training up to it, which weight soups need")
    train.add_argument("--strict", action="store_true", help="abort on the first bad data row")
    train.set_defaults(handler=cmd_train)

    evaluate = sub.add_parser("evaluate", help="re-compute dev metrics from a saved run's best checkpoint")
    evaluate.add_argument("--run", required=True, help="run directory")
    evaluate.add_argument("--write-outputs", action="store_true",
                          help="also (re)write predictions, figures and final dev metrics from the best checkpoint")
    precision_flag(evaluate)
    backend_flags(evaluate)
    data_dir_flag(evaluate)
    evaluate.set_defaults(handler=cmd_evaluate)

    predict = sub.add_parser("predict", help="predict with a saved run")
    predict.add_argument("--run", required=True, help="run directory")
    predict.add_argument("--task", default=None,
                         help="task name (default: the run's only sentiment task, else its only task)")
    predict.add_argument("texts", nargs="*", help="sentences; for a pair task, two per example")
    predict.add_argument("--text", action="append", help="a sentence, or a text to tag (repeatable)")
    predict.add_argument("--question", action="append",
                         help="a question, with --context (extractive QA) or with --choice (multiple choice)")
    predict.add_argument("--context", action="append", help="the passage a --question is answered from")
    predict.add_argument("--choice", action="append", help="one choice of a --question (repeat it for each)")
    predict.add_argument("--input", default=None, help="a file: CS224N format with a header, or one example a line")
    predict.add_argument("--output", default=None, help="write predictions here in the starter's format")
    predict.add_argument("--skip-bad-rows", action="store_true",
                         help="with --input: predict the well-formed rows and report the others (default: stop)")
    precision_flag(predict)
    backend_flags(predict)
    predict.set_defaults(handler=cmd_predict)

    export = sub.add_parser("export", help="export a run for other tools: a sentence-transformers folder, or ONNX")
    export.add_argument("run", help="the run directory")
    export.add_argument("--format", required=True, help="sentence-transformers or onnx")
    export.add_argument("rest", nargs="*", metavar="[DIR] [key=value ...]",
                        help="where to write it, a new or empty directory (default: RUN/<format>); then the format's "
                             "options: sentence-transformers task=NAME normalize=true; onnx opset=18")
    export.add_argument("--task", default=None,
                        help="sentence-transformers: the task whose sentence vectors it gives (default: the only "
                             "task, or the siamese one)")
    export.add_argument("--overwrite", action="store_true", help="replace an earlier export of this format there")
    export.set_defaults(handler=cmd_export)

    ablate = sub.add_parser("ablate", help="run a sweep's variants and write their comparison table")
    ablate.add_argument("sweep", help="sweep TOML: base config, [variants] of key=value lists")
    ablate.add_argument("overrides", nargs="*", metavar="key=value",
                        help="applied to every run after the sweep's own (e.g. model.path=DIR)")
    data_dir_flag(ablate)
    ablate.add_argument("--budget", type=float, default=None,
                        help="train every variant on this share (0-1] of each task's training data")
    ablate.add_argument("--seeds", type=seed_list, default=None,
                        help="comma-separated seeds: every variant once per seed (overrides the sweep's `seeds`)")
    ablate.add_argument("--jobs", type=int, default=1,
                        help="train this many runs at once in separate processes (GPU or many cores)")
    ablate.set_defaults(handler=cmd_ablate)

    tune = sub.add_parser("tune", help="search hyperparameters with Optuna (one worker or many sharing a storage)")
    tune.add_argument("search", help="search TOML: base config, budget per trial, [space]")
    tune.add_argument("--trials", type=int, default=None, help="trials in the study in all (default: the file's)")
    tune.add_argument("--timeout", type=float, default=None, metavar="MIN", help="stop starting trials after MIN")
    tune.add_argument("--jobs", type=int, default=1, help="worker processes on this machine, sharing its cores")
    tune.add_argument("--storage", default=None, metavar="URL",
                      help="an Optuna RDB URL shared by several workers (default: SQLite in the study directory)")
    tune.add_argument("--study", default=None, metavar="NAME", help="the study's name (default: the file's stem)")
    tune.add_argument("--output-dir", default="runs", help="the study goes to OUTPUT_DIR/tune/NAME (default: runs)")
    data_dir_flag(tune)
    tune.set_defaults(handler=cmd_tune)

    ensemble = sub.add_parser("ensemble", help="average member runs' outputs into a run directory of predictions")
    ensemble.add_argument("runs", nargs="+", help="member run directories (or ensembles)")
    ensemble.add_argument("--name", required=True, help="the ensemble's run name")
    ensemble.add_argument("--output-dir", default="runs", help="where its run directory goes (default: runs)")
    ensemble.add_argument("--overwrite", action="store_true", help="replace an existing ensemble of that name")
    ensemble.add_argument("--weights", choices=["equal", "fitted"], default="equal",
                          help="each data set's member weights: equal (default), or fitted on the tune split every "
                               "member held out of its training file (train.tune_split; dev and test untouched)")
    data_dir_flag(ensemble)
    ensemble.set_defaults(handler=cmd_ensemble)

    soup = sub.add_parser("soup", help="one model from the mean of the weights of runs fine-tuned from one start")
    soup.add_argument("runs", nargs="+", help="member run directories (the same architecture and starting model)")
    soup.add_argument("--name", required=True, help="the soup's run name")
    soup.add_argument("--greedy", action="store_true",
                      help="add members best first, each only if the dev selection score does not fall (default: "
                           "the uniform mean of all)")
    soup.add_argument("--output-dir", default="runs", help="where its run directory goes (default: runs)")
    soup.add_argument("--overwrite", action="store_true", help="replace an existing run of that name")
    data_dir_flag(soup)
    soup.set_defaults(handler=cmd_soup)

    report = sub.add_parser("report", help="a self-contained HTML report of a run, or a comparison of several")
    report.add_argument("runs", nargs="+", help="run (or ensemble) directories")
    report.add_argument("--output", default=None,
                        help="the HTML file (default: RUN/report.html for one run, ./comparison.html for several)")
    report.set_defaults(handler=cmd_report)

    serve = sub.add_parser("serve", help="serve a run as a JSON HTTP API with a page to try it (FastAPI, uvicorn)")
    serve.add_argument("--run", required=True, help="the run directory to serve")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    batching_flags(serve)
    serve.add_argument("--max-texts", type=int, default=64, help="texts or pairs per request (default: 64)")
    serve.add_argument("--max-chars", type=int, default=2000, help="characters per text (default: 2000)")
    serve.add_argument("--timeout", type=float, default=10.0, help="seconds to answer a request (default: 10)")
    serve.add_argument("--max-body-bytes", type=int, default=0,
                       help="bytes of a request body, refused before it is read (default: room for --max-texts "
                            "pairs of --max-chars characters)")
    precision_flag(serve)
    backend_flags(serve)
    serve.set_defaults(handler=cmd_serve)

    loadtest = sub.add_parser("loadtest", help="a bounded load test of `minbert serve`: batched vs one at a time")
    loadtest.add_argument("--run", required=True, help="the run directory to serve")
    loadtest.add_argument("--clients", type=positive_ints, default=[1, 8, 32],
                          help="comma-separated concurrent clients per level (default: 1,8,32)")
    loadtest.add_argument("--requests", type=positive_int, default=300, help="requests per level (default: 300)")
    loadtest.add_argument("--time-limit", type=finite_number(0, low_allowed=False), default=60,
                          help="seconds per level at most (default: 60)")
    batching_flags(loadtest)
    loadtest.add_argument("--backends", type=backend_list, default=["torch"],
                          help="comma-separated backends to serve with in turn: torch, onnx (default: torch)")
    loadtest.add_argument("--output", default=None, help="also write the markdown table here")
    loadtest.set_defaults(handler=cmd_loadtest)

    bench = sub.add_parser("bench", help="minbert vs HF transformers: inference and training speed, memory")
    data_dir_flag(bench)
    bench.add_argument("--steps", type=positive_int, default=None,
                       help="timed training steps per engine (default: 20; 50 with --gpu)")
    bench.add_argument("--run", default=None,
                       help="also compare a trained run's dev metrics in fp32, bf16 (where fast) and int8 (CPU)")
    bench.add_argument("--job-steps", type=int, default=0, metavar="N",
                       help="also time N steps of the default job, eager and compiled (rate, padding, peak memory)")
    bench.add_argument("--gpu", action="store_true",
                       help="the GPU training bench instead: minbert, HF eager, HF sdpa at bert-base's shape (random "
                            "weights, synthetic batches), bf16 autocast; sentences/s, tokens/s, %% of bf16 peak, "
                            "peak GPU memory")
    gpu = bench.add_argument_group("with --gpu")
    gpu.add_argument("--device", choices=("cuda", "cpu"), default=None,
                     help="where it trains (default: cuda; cpu checks the bench itself, with a tiny shape)")
    gpu.add_argument("--batch-size", type=positive_int, default=None, help="sentences per step (default: 32)")
    gpu.add_argument("--seq-length", type=positive_int, default=None, help="tokens per sentence (default: 128)")
    gpu.add_argument("--warmup-steps", type=int, default=None, help="untimed steps first (default: 5)")
    gpu.add_argument("--layers", type=positive_int, default=None, help="encoder layers (default: 12)")
    gpu.add_argument("--hidden", type=positive_int, default=None,
                     help="hidden size; the feed-forward is 4x (default: 768)")
    gpu.add_argument("--heads", type=positive_int, default=None, help="attention heads (default: 12)")
    gpu.add_argument("--peak-tflops", type=finite_number(0, low_allowed=False), default=None,
                     help="the card's dense bf16 peak (default: a datasheet table by device name, else the "
                          "measured matmul)")
    bench.add_argument("--json", action="store_true", help="print the report as JSON")
    bench.add_argument("--output", default=None, help="also write the JSON report here")
    bench.set_defaults(handler=cmd_bench)
    return parser


# Sub-commands whose free arguments may sit between options: `train --data-dir D train.lr=1e-5`.
FREE_ARGUMENTS = {"train": "overrides", "predict": "texts", "ablate": "overrides", "export": "rest"}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    dest = FREE_ARGUMENTS.get(args.command)
    unknown = [a for a in extra if dest is None or a.startswith("-")]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if extra:
        setattr(args, dest, [*getattr(args, dest), *extra])
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    with STOP.installed():
        try:
            return args.handler(args)
        except MinbertError as exc:
            print(f"minbert: error: {exc}", file=sys.stderr)
            return 2
        except Interrupted as exc:
            print(f"minbert: {exc}", file=sys.stderr)
            return exc.exit_code
        except KeyboardInterrupt:  # raised before our handlers were in place
            print("minbert: stopped by SIGINT", file=sys.stderr)
            return 128 + signal.SIGINT


def entry() -> None:
    """The `minbert` command: under mimalloc from its wheel (else jemalloc where the system has it, or the
    allocator MINBERT_ALLOCATOR names), with a bounded oneDNN kernel cache (minbert/allocator.py), then `main`."""
    from minbert.allocator import limit_onednn_kernel_cache, reexec_with_fast_allocator

    limit_onednn_kernel_cache(os.environ)
    try:
        reexec_with_fast_allocator()
    except MinbertError as exc:  # an allocator chosen but not installed: one line, before any work
        print(f"minbert: error: {exc}", file=sys.stderr)
        sys.exit(2)
    sys.exit(main())


if __name__ == "__main__":
    entry()
