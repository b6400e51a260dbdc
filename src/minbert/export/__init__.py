"""Exports of a trained run for other tools, each a unit of one registry (`minbert export RUN --format NAME DIR`):

- `sentence-transformers`: a folder `SentenceTransformer(DIR)` loads, giving the run's sentence vectors for a task;
- `onnx`: the encoder and every task head as ONNX graphs (torch.onnx), with a manifest; minbert predicts and serves
  from it with ONNX Runtime (`--backend onnx`, minbert.export.onnx_runtime).
"""

from __future__ import annotations

from minbert.export.onnx_export import OnnxExport
from minbert.export.sbert import SentenceTransformersFolder
from minbert.export.source import ExportSource, write_export
from minbert.options import Registry

EXPORT_FORMATS = Registry("export format", {
    "sentence-transformers": SentenceTransformersFolder,
    "onnx": OnnxExport,
})

__all__ = ["EXPORT_FORMATS", "ExportSource", "write_export"]
