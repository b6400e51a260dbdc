"""The user-facing predictor: a finished run's best checkpoint, ready to predict (`MultitaskBERT.load`)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from minbert.data.batching import Batch, TaskData
from minbert.data.files import Example
from minbert.data.spec import builtin_name
from minbert.device import INFERENCE_PRECISIONS, autocast, quantize_int8, resolve_device, resolve_precision
from minbert.errors import ConfigError, DataError
from minbert.evaluation.predict import Inference, predict
from minbert.export.onnx_runtime import BACKENDS, OnnxMultitaskModel
from minbert.model.bert import BertModel
from minbert.model.config import BertConfig
from minbert.model.loading import file_digest, verify_digests
from minbert.tasks.model import MultitaskModel, check_max_length, vector_task
from minbert.tokenizer import TOKENIZER_FILES, Tokenizer
from minbert.training.config import RunConfig, check_trained_with, load_config

log = logging.getLogger("minbert")


class MultitaskBERT:
    """A trained run, ready to predict: `MultitaskBERT.load("runs/sst-finetune")`."""

    def __init__(self, config: RunConfig, model: MultitaskModel | OnnxMultitaskModel, tokenizer: Tokenizer,
                 run_dir: Path, precision: str | None = None, device: str | None = None):
        self.config, self.model, self.tokenizer, self.run_dir = config, model, tokenizer, run_dir
        device = resolve_device(device or config.device)
        self.model.to(device).eval()
        autocast_dtype = resolve_precision(precision or config.train.precision, device)
        self.inference = Inference(device, autocast_dtype, config.train.eval_batch_size)

    @classmethod
    def load(cls, run_dir: str | Path, precision: str | None = None, backend: str = "torch",
             onnx_dir: str | Path | None = None) -> MultitaskBERT:
        """`precision` (fp32, bf16, auto, or int8: quantized encoder weights, CPU only) overrides the run's own.
        `backend = "onnx"`: the run's ONNX export (`onnx_dir`, default RUN/onnx: `minbert export RUN --format onnx`)
        run by ONNX Runtime on the CPU, in fp32."""
        run_dir = Path(run_dir)
        if not (run_dir / "config.toml").exists():
            raise ConfigError(f"{run_dir}: not a run directory (no config.toml)")
        if precision is not None and precision not in INFERENCE_PRECISIONS:
            raise ConfigError(f"precision {precision!r} is not one of {', '.join(INFERENCE_PRECISIONS)}")
        if backend not in BACKENDS:
            raise ConfigError(f"backend {backend!r} is not one of {', '.join(BACKENDS)}")
        config = load_config(run_dir / "config.toml")
        check_trained_with(run_dir, config)
        best = run_dir / "best"
        if backend == "onnx":
            return cls.load_onnx(run_dir, config, Path(onnx_dir) if onnx_dir else run_dir / "onnx", precision)
        # the config and tokenizer files; the weights are checked as they are read (load_checkpoint)
        verify_digests(best, ["config.json", *TOKENIZER_FILES])
        encoder = BertModel(BertConfig.from_json(best / "config.json"))
        check_max_length(config.model, encoder)
        model = MultitaskModel(encoder, config.tasks, config.model)
        model.load_checkpoint(best)
        if precision == "int8":  # quantized weights, fp32 activations
            model.encoder = quantize_int8(model.encoder, resolve_device(config.device))
        return cls(config, model, Tokenizer.from_pretrained(best), run_dir,
                   "fp32" if precision == "int8" else precision)

    @classmethod
    def load_onnx(cls, run_dir: Path, config: RunConfig, onnx_dir: Path, precision: str | None) -> MultitaskBERT:
        if precision not in (None, "fp32", "auto"):
            raise ConfigError(f"precision {precision!r}: the ONNX backend runs its fp32 graphs (leave --precision out)")
        model = OnnxMultitaskModel(onnx_dir, config)
        best = run_dir / "best"
        if (best / "model.safetensors").is_file() and model.manifest["checkpoint_sha256"] != file_digest(
                best / "model.safetensors", "sha256"):
            raise ConfigError(f"{onnx_dir} was exported from another state of {run_dir} (its best checkpoint has "
                              f"changed since): export it again (minbert export {run_dir} --format onnx --overwrite)")
        return cls(config, model, Tokenizer.from_pretrained(onnx_dir), run_dir, "fp32", device="cpu")

    def prepare_for_serving(self) -> None:
        """Lay the weights out once for answering requests; afterwards the model only answers (no training, no
        gradients). Outputs equal the unprepared model's (bf16: bit for bit; fp32: within float rounding).
        - bf16: every Linear layer's weight and bias held in the autocast dtype, cast once here, where autocast
          would cast each of them again on every model call (MiniLM: 21 M weights per call, one sentence or 64).
          Autocast stays on for the activations.
        - fp32 on a CPU: every Linear weight held transposed in memory (the same (out, in) tensor, column-major),
          so F.linear hands MKL an untransposed right-hand matrix. Its sgemm for the few rows of a lone request is
          1.3 to 8 times faster that way (MiniLM's shapes at 8 rows, issue 46); at 256 rows, within 10 %.
        int8's quantized layers (not nn.Linear) and ONNX models are left as they are."""
        if not isinstance(self.model, MultitaskModel):
            return
        dtype, device = self.inference.autocast_dtype, self.inference.device
        if dtype is None and device.type != "cpu":
            return
        self.model.requires_grad_(False)
        for module in self.model.modules():
            if not isinstance(module, torch.nn.Linear):
                continue
            if dtype is not None:
                module.to(dtype)
            else:
                module.weight.data = module.weight.data.t().contiguous().t()

    def resolve_task(self, task: str | None, sentiment: bool) -> str:
        if task is not None:
            if task not in self.config.tasks:
                raise ConfigError(f"task {task!r} is not in this run (it has {', '.join(self.config.tasks)})")
            return task
        chosen = ([t for t, c in self.config.tasks.items() if builtin_name(c.data) in ("sst", "cfimdb")]
                  if sentiment else [])
        if len(chosen) != 1 and len(self.config.tasks) == 1:  # no one sentiment task: a run's only task is meant
            chosen = list(self.config.tasks)
        if len(chosen) != 1:
            raise ConfigError(f"name a task with --task (this run has {', '.join(self.config.tasks)})")
        return chosen[0]

    def _predict(self, task: str, texts: Sequence[tuple[str, ...]]) -> list:
        for number, row in enumerate(texts, start=1):
            for text in row:
                if not isinstance(text, str):
                    raise DataError(f"example {number}: expected text, got {type(text).__name__}")
                if not text.strip():
                    raise DataError(f"example {number}: empty text")
        examples = [Example(str(i), tuple(t), None, i + 1) for i, t in enumerate(texts)]
        limit = self.config.model.max_length
        for number, row in enumerate(texts, start=1):
            tokens = sum(len(self.tokenizer.tokenize(text)) for text in row) + len(row) + 1  # + [CLS], [SEP]s
            if tokens > limit:
                log.warning("example %d: %d tokens, truncated to the model's %d", number, tokens, limit)
        return self.outputs(task, examples, soft=False).tolist()

    def outputs(self, task: str, examples: Sequence[Example], soft: bool = True) -> np.ndarray:
        """`task`'s soft outputs (class probabilities, paraphrase probability, score: what ensembles average and
        teachers pass on), or with soft=False its predictions, for examples (only their texts are read)."""
        return predict(self.model, self.task_data(task, examples), self.inference, soft=soft)

    def task_data(self, task: str, examples: Sequence[Example]) -> TaskData:
        """`examples` tokenized for `task` (all at once), as `outputs` predicts them."""
        return self.model.heads[task].kind.task_data(list(examples), self.tokenizer, self.config.model.max_length,
                                                     siamese=self.model.heads[task].siamese,
                                                     both_orders=self.config.tasks[task].predict_order == "both")

    def answers(self, task: str, rows: Sequence[tuple[str, ...]]) -> list[dict]:
        """Each example in its kind's natural form, a row of texts (serve's body, predict's --text, --question, ...:
        TaskKind.serve_rows / predict_rows), answered as `serve` answers it, in order."""
        kind = self.model.heads[task].kind
        examples = kind.serve_examples(rows, self.tokenizer)
        soft = self.outputs(task, examples, soft=True)
        return kind.serve_answers(examples, kind.decide(soft), soft)

    @torch.no_grad()
    def embed(self, texts: Sequence[str], task: str | None = None) -> np.ndarray:
        """(N, D) float32 sentence vectors in input order: `task`'s pooling (and the common layers) over the encoder,
        what its head compares (the run's only task, or its one siamese task, when None)."""
        if isinstance(texts, str):
            raise DataError("expected a list of texts, got a str")
        task = vector_task(self.model.heads, task, str(self.run_dir))
        head = self.model.heads[task]
        rows = self.tokenizer.encode_ids(list(texts), max_length=self.config.model.max_length)
        order = np.argsort(rows.lengths, kind="stable")
        out: np.ndarray | None = None
        device, size = self.inference.device, self.inference.batch_size
        for start in range(0, len(rows), size):
            chosen = order[start:start + size]
            inputs = {k: v.to(device) for k, v in self.tokenizer.pad([rows[i] for i in chosen]).items()}
            with autocast(device, self.inference.autocast_dtype):
                output = self.model.encode(Batch(task, inputs, None, chosen.tolist()))  # its PALs, own layers
                vectors = head.vectors(output, inputs["attention_mask"], getattr(self.model, "common", None))
            vectors = vectors.float().cpu().numpy()
            out = np.zeros((len(rows), vectors.shape[1]), dtype=np.float32) if out is None else out
            out[chosen] = vectors
        return out if out is not None else np.zeros((0, 0), dtype=np.float32)

    def task_for(self, data: str, task: str | None = None) -> str:
        """The run's task on a built-in data set (sst, cfimdb, quora, sts), or the named one."""
        if task is not None:
            return self.resolve_task(task, sentiment=False)
        chosen = [t for t, c in self.config.tasks.items() if builtin_name(c.data) == data]
        if len(chosen) != 1:
            raise ConfigError(f"this run has no single {data} task (it has {', '.join(self.config.tasks)})")
        return chosen[0]

    def predict(self, task: str, texts: Sequence[str] | Sequence[Sequence[str]], labels: bool = False) -> list:
        """Predictions of any task of the run, in order: for a single-sentence task a list of texts (or of 1-tuples),
        for a pair task a list of pairs. Class indices or scores; with `labels`, class names instead of indices."""
        task = self.resolve_task(task, sentiment=False)
        kind = self.model.heads[task].kind
        width = len(kind.format.text_columns)
        if isinstance(texts, str):
            raise DataError("expected a list of rows, got a str")
        rows = []
        for i, row in enumerate(texts):
            if isinstance(row, str):  # tuple("ab") would silently become the pair ("a", "b")
                if width == 1:
                    rows.append((row,))
                    continue
                raise DataError(f"example {i + 1}: expected a pair of texts, got a str")
            if len(row) != width:
                raise DataError(f"example {i + 1}: task {task} takes {width} text(s) per example, got {len(row)}")
            rows.append(tuple(row))
        predictions = self._predict(task, rows)
        return kind.named(predictions) if labels else predictions

    def class_names(self, task: str) -> list[str] | None:
        """What a classification task's indices mean (None for a regression task)."""
        return self.model.heads[self.resolve_task(task, sentiment=False)].kind.class_names

    def predict_sentiment(self, texts: str | Sequence[str], task: str | None = None) -> int | list[int]:
        """Class indices (SST: 0 very negative .. 4 very positive; CFIMDB: 0 negative, 1 positive); one text
        gives one index, a list of texts a list."""
        task = self.resolve_task(task, sentiment=True)
        if isinstance(texts, str):
            return self.predict(task, [(texts,)])[0]
        return self.predict(task, [(t,) for t in texts])

    def predict_paraphrase(self, pairs: tuple[str, str] | Sequence[tuple[str, str]],
                           task: str | None = None) -> int | list[int]:
        """1 where the two questions are paraphrases, else 0; one pair gives one answer, a list of pairs a list."""
        return self._predict_pairs(self.task_for("quora", task), pairs)

    def predict_similarity(self, pairs: tuple[str, str] | Sequence[tuple[str, str]],
                           task: str | None = None) -> float | list[float]:
        """Similarity scores from 0 (unrelated) to 5 (same meaning); one pair gives one score."""
        return self._predict_pairs(self.task_for("sts", task), pairs)

    def _predict_pairs(self, task: str, pairs: tuple[str, str] | Sequence[tuple[str, str]]) -> list | int | float:
        if isinstance(pairs, tuple) and len(pairs) == 2 and all(isinstance(t, str) for t in pairs):
            return self.predict(task, [pairs])[0]
        return self.predict(task, pairs)
