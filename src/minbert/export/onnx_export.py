"""The run as ONNX graphs (torch.onnx's exporter, dynamic batch and sequence axes): `encoder.onnx` (token ids ->
last hidden states and pooler output) once, and per task `heads/<task>.onnx` (hidden states -> the task's pooling,
common layers and head: what its kind exports, TaskKind.graph_outputs: a sentence task's logits, score on the
label's scale and sentence vectors; a tagging task's (B, T, tags) token logits), so the 90 MB encoder is not copied
per task (a task with its own top layers, model.task_layers, has its own `encoders/<task>.onnx`). `manifest.json`
says which graph is which, what each task is (its kind, classes, score range, tags), and where the tokenizer is;
the run's config.toml is copied beside it, so the folder alone is enough to predict."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import shutil
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from minbert.export.source import ExportSource
from minbert.model.bert import BertModel, BertOutput
from minbert.options import option
from minbert.tasks.kinds import refuse
from minbert.tasks.model import TaskModule
from minbert.tokenizer import copy_tokenizer_files

MANIFEST = "manifest.json"
ENCODER_INPUTS = ["input_ids", "attention_mask", "token_type_ids"]
ENCODER_OUTPUTS = ["last_hidden_state", "pooler_output"]

log = logging.getLogger("minbert")


class EncoderGraph(nn.Module):
    def __init__(self, encoder: BertModel):
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor) -> tuple[Tensor, Tensor]:
        output = self.encoder(input_ids, attention_mask, token_type_ids)
        return output.last_hidden_state, output.pooler_output


class HeadGraph(nn.Module):
    """A task's part after the encoder, as TaskModule.forward computes it, giving what its kind exports of it;
    `pairs` (B, 2) for siamese tasks."""

    def __init__(self, task: TaskModule, common: nn.Module):
        super().__init__()
        self.task, self.common = task, common

    def forward(self, last_hidden_state: Tensor, pooler_output: Tensor, attention_mask: Tensor,
                pairs: Tensor | None = None) -> tuple[Tensor, ...]:
        pooled = self.common(self.task.pooling(BertOutput(last_hidden_state, pooler_output), attention_mask))
        logits = self.task.head(pooled, pairs)
        return self.task.kind.graph_outputs(logits, self.task.score(logits), pooled)


@contextlib.contextmanager
def quiet_exporter() -> Iterator[None]:
    """The exporter prints its progress, and it and onnxscript's optimizer log every pass at INFO: kept out of the
    command's output (an error still raises)."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "onnxscript", "onnx_ir")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


@contextlib.contextmanager
def one_torchlib_registry() -> Iterator[None]:
    """torch.onnx.export builds its table of ONNX functions for every graph it exports (it parses the source of some
    500 onnxscript functions: as long as tracing a small graph), and takes no table from its caller (torch 2.13); so
    that the graphs of one export share one table, its builder gives the first table built again until the export
    ends (the exporter only reads it: minbert passes no custom_translation_table)."""
    try:
        from torch.onnx._internal.exporter._registration import ONNXRegistry
        build = vars(ONNXRegistry)["from_torchlib"]
    except (ImportError, KeyError):  # another exporter: each graph builds its own table, as torch does
        yield
        return
    tables: dict = {}

    def shared(cls, *args, **kwargs):
        key = (cls, args, tuple(sorted(kwargs.items())))
        if key not in tables:
            tables[key] = build.__func__(cls, *args, **kwargs)
        return tables[key]

    ONNXRegistry.from_torchlib = classmethod(shared)
    try:
        yield
    finally:
        ONNXRegistry.from_torchlib = build


def export_graph(module: nn.Module, args: tuple, path: Path, inputs: list[str], outputs: list[str],
                 dynamic: dict[str, dict[int, str]], opset: int) -> None:
    """torch.onnx.export (the torch.export-based exporter) with named dynamic axes, weights inside the file, then
    onnx's checker."""
    import onnx

    dims = {name: torch.export.Dim.AUTO for axes in dynamic.values() for name in axes.values()}
    shapes = {name: {axis: dims[label] for axis, label in dynamic[name].items()} for name in inputs}
    with quiet_exporter():
        program = torch.onnx.export(module, args, dynamo=True, input_names=inputs, output_names=outputs,
                                    dynamic_shapes=shapes, opset_version=opset, verbose=False, report=False)
    program.save(str(path), external_data=False)
    onnx.checker.check_model(str(path), full_check=True)


TOKEN_AXES = {0: "batch", 1: "sequence"}


def export_encoder(encoder: BertModel, path: Path, opset: int = 18) -> tuple[Tensor, Tensor]:
    """encoder.onnx; returns the example (input_ids, attention_mask) it was traced with."""
    batch, length = 3, 7  # example shapes (not 0 or 1, which the exporter would fix); every axis is dynamic
    ids = torch.full((batch, length), 1, dtype=torch.long)
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    export_graph(EncoderGraph(encoder), (ids, mask, torch.zeros_like(ids)), path, ENCODER_INPUTS, ENCODER_OUTPUTS,
                 dict.fromkeys(ENCODER_INPUTS, TOKEN_AXES), opset)
    return ids, mask


class OnnxExport:
    """`minbert export RUN --format onnx DIR [opset=18]`."""

    @dataclass
    class Options:
        opset: int = option(18, low=18)  # ONNX opset of the graphs (the exporter's own minimum is 18)

    @one_torchlib_registry()
    def export(self, source: ExportSource, directory: Path, options: Options) -> dict:
        model = source.model
        for head in model.heads.values():
            refuse(head.kind, "the ONNX export")
        source.check_plain_encoders("the ONNX export")
        ids, mask = export_encoder(model.encoder, directory / "encoder.onnx", options.opset)
        with torch.no_grad():
            hidden = model.encoder(ids, mask)
        (directory / "heads").mkdir()
        tasks = {}
        for task, head in model.heads.items():
            inputs = ["last_hidden_state", "pooler_output", "attention_mask"]
            args: tuple = (hidden.last_hidden_state, hidden.pooler_output, mask)
            dynamic = {"last_hidden_state": TOKEN_AXES, "pooler_output": {0: "batch"}, "attention_mask": TOKEN_AXES}
            if head.siamese:
                inputs.append("pairs")
                args += (torch.tensor([[0, 1], [2, 0]]),)
                dynamic["pairs"] = {0: "pairs"}
            own_encoder = None
            if task in model.task_layers:  # its own top layers (model.task_layers): a whole encoder graph of its own
                (directory / "encoders").mkdir(exist_ok=True)
                own_encoder = (Path("encoders") / f"{task}.onnx").as_posix()
                export_encoder(model.task_encoder(task), directory / own_encoder, options.opset)
            path = Path("heads") / f"{task}.onnx"
            outputs = list(head.kind.graph_output_names)
            export_graph(HeadGraph(head, model.common), args, directory / path, inputs, outputs, dynamic,
                         options.opset)
            tasks[task] = {"graph": path.as_posix(), "inputs": inputs, "outputs": outputs,
                           "encoder": own_encoder, "siamese": head.siamese, **head.kind.export_entry()}
        tokenizer = copy_tokenizer_files(source.best, directory)
        shutil.copy2(source.best / "config.json", directory / "config.json")  # the encoder's shape, for the tokenizer
        shutil.copy2(source.run_dir / "config.toml", directory / "config.toml")
        manifest = {"encoder": {"graph": "encoder.onnx", "inputs": ENCODER_INPUTS, "outputs": ENCODER_OUTPUTS},
                    "tasks": tasks, "tokenizer": tokenizer,
                    "max_length": source.config.model.max_length, "opset": options.opset,
                    "config": "config.toml", "checkpoint_sha256": source.checkpoint_sha256}
        (directory / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        return {"tasks": list(tasks), "opset": options.opset}
