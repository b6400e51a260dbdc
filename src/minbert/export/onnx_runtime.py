"""Predicting from an ONNX export (minbert.export.onnx_export) with ONNX Runtime on the CPU: `OnnxMultitaskModel`
is called like MultitaskModel (a Batch in, TaskOutput out) and its `encoder` like BertModel, so prediction files,
ensembles, the Python API and `serve` run on either backend through the same code."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from minbert.data.batching import Batch
from minbert.errors import CheckpointError, ConfigError
from minbert.export.onnx_export import MANIFEST
from minbert.model.bert import BertOutput
from minbert.model.config import BertConfig
from minbert.tasks.kinds import TaskKind, kind_of
from minbert.tasks.losses import TaskOutput
from minbert.training.config import RunConfig

BACKENDS = ("torch", "onnx")


def session(path: Path):
    """An ONNX Runtime CPU session using as many threads as torch does here (one knob for both backends)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ONNX Runtime's own exception types (InvalidGraph, NoSuchFile, ...)
        raise CheckpointError(f"{path}: ONNX Runtime cannot load it ({exc})") from None


def _numpy(tensor: Tensor) -> np.ndarray:
    return tensor.detach().cpu().numpy()


class OnnxEncoder:
    """encoder.onnx, called like BertModel: torch tensors in, a BertOutput out (CPU, fp32)."""

    def __init__(self, path: Path, config: BertConfig):
        self.session, self.config = session(path), config

    def to(self, device: torch.device | str) -> OnnxEncoder:
        if torch.device(device).type != "cpu":
            raise ConfigError("the ONNX backend runs on the CPU (ONNX Runtime's CPU provider): set device = \"cpu\"")
        return self

    def eval(self) -> OnnxEncoder:
        return self

    def __call__(self, input_ids: Tensor, attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None,
                 **unsupported) -> BertOutput:
        if any(value is not None for value in unsupported.values()):
            raise ConfigError(f"the ONNX encoder takes token ids only, not {', '.join(unsupported)}")
        feeds = {"input_ids": _numpy(input_ids).astype(np.int64),
                 "attention_mask": _numpy(attention_mask if attention_mask is not None
                                          else torch.ones_like(input_ids)).astype(np.int64),
                 "token_type_ids": _numpy(token_type_ids if token_type_ids is not None
                                          else torch.zeros_like(input_ids)).astype(np.int64)}
        hidden, pooled = self.session.run(None, feeds)
        return BertOutput(torch.from_numpy(hidden), torch.from_numpy(pooled))


class OnnxHead:
    """heads/<task>.onnx: what the torch TaskModule's callers read (kind, siamese, pal) and its graph, whose
    outputs (`outputs`, the manifest's names) its kind reads back (TaskKind.graph_task_output)."""

    def __init__(self, path: Path, kind: TaskKind, siamese: bool, outputs: list[str]):
        self.session, self.kind, self.siamese, self.pal = session(path), kind, siamese, None
        self.outputs = outputs
        self.inputs = {graph_input.name for graph_input in self.session.get_inputs()}  # the exporter drops unused

    def _run(self, output: BertOutput, attention_mask: Tensor, pairs: Tensor | None,
             outputs: list[str] | None = None) -> list[Tensor]:
        feeds = {"last_hidden_state": _numpy(output.last_hidden_state), "pooler_output": _numpy(output.pooler_output),
                 "attention_mask": _numpy(attention_mask).astype(np.int64)}
        if self.siamese:  # the sentence vectors need no pair: one dummy pair then
            feeds["pairs"] = _numpy(pairs if pairs is not None else torch.zeros((1, 2), dtype=torch.long))
        feeds = {name: value for name, value in feeds.items() if name in self.inputs}
        return [torch.from_numpy(a) for a in self.session.run(outputs, feeds)]

    def __call__(self, output: BertOutput, batch: Batch) -> TaskOutput:
        results = self._run(output, batch.inputs["attention_mask"], batch.index if self.siamese else None)
        return self.kind.graph_task_output(dict(zip(self.outputs, results, strict=True)), batch, self.siamese)

    def vectors(self, output: BertOutput, attention_mask: Tensor, common: object = None) -> Tensor:
        """The task's sentence vectors (N sequences, D), as TaskModule.vectors."""
        return self._run(output, attention_mask, None, ["sentence_vectors"])[0]


class OnnxMultitaskModel:
    """An ONNX export of a run, called like its MultitaskModel."""

    def __init__(self, directory: Path, config: RunConfig):
        manifest = read_manifest(directory)
        if set(manifest["tasks"]) != set(config.tasks):
            raise ConfigError(f"{directory}: exported with tasks {', '.join(manifest['tasks'])}, the run has "
                              f"{', '.join(config.tasks)}: export it again")
        self.directory, self.manifest = directory, manifest
        bert = BertConfig.from_json(directory / "config.json")
        self.encoder = OnnxEncoder(directory / manifest["encoder"]["graph"], bert)
        # tasks with their own top layers (model.task_layers) have an encoder graph of their own
        self.task_encoders = {task: OnnxEncoder(directory / entry["encoder"], bert)
                              for task, entry in manifest["tasks"].items() if entry.get("encoder")}
        self.heads = {task: OnnxHead(directory / entry["graph"], kind_of(task, config.tasks[task]), entry["siamese"],
                                     entry["outputs"])
                      for task, entry in manifest["tasks"].items()}

    def to(self, device: torch.device | str) -> OnnxMultitaskModel:
        for encoder in (self.encoder, *self.task_encoders.values()):
            encoder.to(device)
        return self

    def eval(self) -> OnnxMultitaskModel:
        return self

    def encode(self, batch: Batch) -> BertOutput:
        encoder = self.task_encoders.get(batch.task, self.encoder)
        return encoder(batch.inputs["input_ids"], batch.inputs["attention_mask"], batch.inputs.get("token_type_ids"))

    def __call__(self, batch: Batch) -> TaskOutput:
        return self.heads[batch.task](self.encode(batch), batch)


def read_manifest(directory: Path) -> dict:
    path = directory / MANIFEST
    if not path.is_file():
        raise CheckpointError(f"{directory}: no ONNX export here (no {MANIFEST}); make one with "
                              f"`minbert export RUN --format onnx {directory}`")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        missing = [key for key in ("encoder", "tasks", "checkpoint_sha256") if key not in manifest]
        if missing:
            raise KeyError(", ".join(missing))
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{path}: not a minbert ONNX manifest ({type(exc).__name__}: {exc})") from None
    return manifest
