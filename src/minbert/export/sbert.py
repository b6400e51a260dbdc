"""A sentence-transformers folder (the layout of sentence-transformers' own models, e.g. all-MiniLM-L6-v2 on the Hub):
the encoder and tokenizer at the root (module 0, Transformer), the task's pooling (1_Pooling), then Dense modules
for what minbert applies after pooling (the pooler's dense + tanh for `cls`, the common layers), and an optional
Normalize. `SentenceTransformer(DIR)` gives the same sentence vectors as the run's task (`MultitaskBERT.embed`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from minbert.export.source import ExportSource
from minbert.model.loading import save_pretrained, save_tensors
from minbert.tasks.kinds import refuse
from minbert.tasks.model import vector_task
from minbert.tasks.pooling import POOLINGS
from minbert.tokenizer import copy_tokenizer_files

# minbert pooling -> sentence-transformers' Pooling modes (it concatenates cls, max, mean in that order)
POOLING_MODES = {"cls": ("cls_token",), "cls_raw": ("cls_token",), "mean": ("mean_tokens",),
                 "max": ("max_tokens",), "mean_max": ("max_tokens", "mean_tokens")}
ACTIVATIONS = {nn.GELU: "torch.nn.modules.activation.GELU", nn.Tanh: "torch.nn.modules.activation.Tanh",
               nn.Identity: "torch.nn.modules.linear.Identity"}


def _write_json(path: Path, value: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2) + "\n", encoding="utf-8")


class SentenceTransformersFolder:
    """`minbert export RUN --format sentence-transformers DIR [task=NAME] [normalize=true]`."""

    @dataclass
    class Options:
        task: str = ""  # whose pooling (and common layers) the vectors use; "" = the only or the siamese task
        normalize: bool = False  # append Normalize (unit vectors, as all-MiniLM-L6-v2 ships); off = minbert's vectors

    def export(self, source: ExportSource, directory: Path, options: Options) -> dict:
        task = vector_task(source.model.heads, options.task, str(source.run_dir))
        refuse(source.model.heads[task].kind, "the sentence-transformers export")  # a kind without sentence vectors
        source.check_plain_encoders("a sentence-transformers folder")
        pooling = POOLINGS.resolve(source.config.tasks[task].pooling).name
        encoder = source.model.task_encoder(task)  # the shared one, or with the task's own top layers
        hidden = encoder.config.hidden_size
        save_pretrained(encoder, directory)  # config.json + model.safetensors, HF BertModel names
        copy_tokenizer_files(source.best, directory)
        _write_json(directory / "sentence_bert_config.json",
                    {"max_seq_length": source.config.model.max_length, "do_lower_case": False})
        _write_json(directory / "config_sentence_transformers.json",
                    {"__version__": {"pytorch": torch.__version__}, "prompts": {}, "default_prompt_name": None,
                     "similarity_fn_name": "cosine"})
        modes = POOLING_MODES[pooling]
        _write_json(directory / "1_Pooling" / "config.json", {
            "word_embedding_dimension": hidden, **{f"pooling_mode_{m}": m in modes for m in
                                                   ("cls_token", "mean_tokens", "max_tokens", "mean_sqrt_len_tokens")}})
        modules = [("", "sentence_transformers.models.Transformer"),
                   ("1_Pooling", "sentence_transformers.models.Pooling")]
        dense: list[tuple[nn.Linear, type]] = []
        if pooling == "cls":  # the pooler: dense + tanh on [CLS]
            dense.append((encoder.pooler.dense, nn.Tanh))
        if pooling == "mean_max":  # minbert's [mean; max] from sentence-transformers' [max; mean]: a permutation
            swap = nn.Linear(2 * hidden, 2 * hidden)
            with torch.no_grad():
                swap.weight.copy_(torch.eye(2 * hidden).roll(hidden, dims=0))
                swap.bias.zero_()
            dense.append((swap, nn.Identity))
        layers = list(source.model.common)
        dense += [(layer, type(layers[i + 1])) for i, layer in enumerate(layers) if isinstance(layer, nn.Linear)]
        for linear, activation in dense:
            path = f"{len(modules)}_Dense"
            _write_json(directory / path / "config.json", {
                "in_features": linear.in_features, "out_features": linear.out_features, "bias": True,
                "activation_function": ACTIVATIONS[activation]})
            save_tensors({"linear.weight": linear.weight.detach().float().contiguous(),
                          "linear.bias": linear.bias.detach().float().contiguous()},
                         directory / path / "model.safetensors")
            modules.append((path, "sentence_transformers.models.Dense"))
        if options.normalize:
            modules.append((f"{len(modules)}_Normalize", "sentence_transformers.models.Normalize"))
            (directory / modules[-1][0]).mkdir()
        _write_json(directory / "modules.json", [{"idx": i, "name": str(i), "path": path, "type": kind}
                                                 for i, (path, kind) in enumerate(modules)])
        return {"task": task, "pooling": pooling, "modules": [kind.rsplit(".", 1)[1] for _, kind in modules]}
