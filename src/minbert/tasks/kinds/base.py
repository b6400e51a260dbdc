"""What every task kind answers. A kind is a unit of the KINDS registry (`classify`, `regress`, ...), chosen by
a task's data spec; it owns what differs between kinds: the head's output size and default loss, how outputs become
predictions and soft outputs (for ensembles and teachers), how predictions are written and shown, the serve answer,
the divergence its regularizers compare, its dev analysis and what an export records of it. The loop, samplers,
runs, reports and ensembles ask the kind and never branch on which kind it is. No data set is named here."""

from __future__ import annotations

import dataclasses
import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import torch
from pydantic import BaseModel
from torch import Tensor

from minbert.data.batching import Batch, TaskData
from minbert.data.files import Example, FileFormat
from minbert.data.spec import DataSpec
from minbert.errors import ConfigError, DataError
from minbert.options import Chosen, Registry
from minbert.outputs import check_output_file, write_output_text
from minbert.tasks.kinds.bodies import TaskRows
from minbert.tasks.losses import Loss, TaskOutput
from minbert.tasks.pooling import POOLINGS
from minbert.tasks.regularizers import REGULARIZERS
from minbert.tokenizer import Tokenizer

if TYPE_CHECKING:
    from torch import nn

KINDS = Registry("task kind")  # a kind's module registers it: @KINDS.register("name")

# What a task's config may need of its kind's model rows -> its words in a refusal. A unit declares its own (a
# regularizer's `needs`), config_needs the keys'; a kind says what it gives (TaskKind.gives) and what it has instead
# (TaskKind.has), and TaskKind.check_config refuses the rest in one line.
NEEDS = {
    "example vectors": "one sentence vector per example",
    "texts alone": "each text of a pair encoded alone",
    "pooled rows": "a pooled vector per row",
    "text rows": "rows of the spec's texts with a label",
}


def config_needs(task: object) -> list[tuple[str, str]]:
    """(key as a refusal names it, need) for what a task's config (a TaskConfig) chooses that needs more than
    token states: its regularizers' declared needs, siamese pairs and their features, a pooling, extra files."""
    def chosen(key: str) -> bool:  # the key is off its default
        found = next(f for f in dataclasses.fields(task) if f.name == key)
        default = found.default if found.default is not dataclasses.MISSING else found.default_factory()
        return getattr(task, key) != default

    needs = [(f"regularizers.{name}", need) for name in task.regularizers
             for need in sorted(getattr(REGULARIZERS[name], "needs", ()))]
    if task.pair_encoding == "siamese":
        needs.append(("pair_encoding = 'siamese'", "texts alone"))
    if chosen("pair_features"):
        needs.append(("pair_features", "texts alone"))
    if chosen("pooling"):
        needs.append((f"pooling = {POOLINGS.resolve(task.pooling).name!r}", "pooled rows"))
    if task.extra:
        needs.append(("extra", "text rows"))
    return needs


@dataclass(frozen=True)
class TaskKind(ABC):
    name: str  # the task's name in the config
    data: str  # the built-in data set's name (sst, cfimdb, quora, sts), "" for a task's own spec
    spec: DataSpec
    loss: str  # the task's loss (its own, else the spec's default)
    loss_options: object  # that loss's options (its defaults when the task did not choose it)
    num_outputs: int  # what the head gives per example (class logits, one logit, a score)
    helper: bool = False  # tasks.X.helper: not counted in best-epoch selection or the overall score

    # --- what a kind declares ---
    default_loss: ClassVar[str]  # a task's loss when neither it nor its spec names one
    described: ClassVar[str]  # the kind for people, in messages ("classification")
    label_dtype: ClassVar[torch.dtype]  # gold labels as training takes them
    prediction_dtype: ClassVar[type]  # predictions as numpy holds them
    similarity_heads: ClassVar[bool] = False  # a cosine head (siamese pairs) can serve it
    balanced_extra: ClassVar[bool] = False  # extra data can be sub-sampled to the same count per label
    # its dev details are sentence rows (texts, gold, predicted, soft) that the report's worst errors and scatter
    # read; a kind without them shows its metrics only (the report's views of tags, spans, choices are to come)
    row_details: ClassVar[bool] = True
    # the report's template of the kind's own dev views (reporting/templates/kinds/{report_template}.html.j2), fed
    # with report_view's answer; "" where the report's sentence-row views (confusion, scatter, worst errors) serve
    report_template: ClassVar[str] = ""
    # what is not built for the kind yet (ensembles, distillation, serve, ONNX export), each refused with one
    # line naming the kind before any work: minbert.tasks.kinds.refuse
    not_yet: ClassVar[frozenset[str]] = frozenset()
    # what the kind's model rows give of NEEDS (sentence kinds: all), and what it has instead, for the refusal
    gives: ClassVar[frozenset[str]] = frozenset(NEEDS)
    has: ClassVar[str] = ""

    @classmethod
    @abstractmethod
    def serves(cls, spec: DataSpec) -> bool:
        """Whether a spec that names no kind is this kind's (kind_of asks each registered kind in turn)."""

    @classmethod
    @abstractmethod
    def outputs(cls, spec: DataSpec, loss: str) -> int:
        """The head's output size for `spec` trained with `loss`."""

    @classmethod
    @abstractmethod
    def takes_loss(cls, loss: type[Loss]) -> bool:
        """Whether a loss unit trains this kind's labels."""

    # --- what follows from the spec ---
    @property
    def format(self) -> FileFormat:
        return self.spec.file_format()

    @property
    def metric(self) -> str:
        """The primary metric: it picks the best epoch and enters the overall score."""
        return self.spec.primary_metric

    @property
    def file_prefix(self) -> str:
        return self.spec.prediction_file or self.name

    @property
    def prediction_header(self) -> str:
        return self.spec.prediction_header()

    @property
    def is_pair(self) -> bool:
        return self.spec.is_pair

    @property
    def class_names(self) -> list[str] | None:
        """What predictions mean for people, one name per class; None where predictions are not classes."""
        return None

    @property
    def score_range(self) -> tuple[float, float] | None:
        return tuple(self.spec.score_range) if self.spec.score_range else None

    @property
    def positive(self) -> int:
        """The positive class of binary metrics."""
        return 1

    def labels(self, examples: Sequence[Example]) -> np.ndarray:
        """Gold labels as training sees them, so that metrics match the epochs' dev metrics."""
        return np.array([e.label for e in examples], dtype=torch.empty(0, dtype=self.label_dtype).numpy().dtype)

    # --- examples -> model inputs ---
    def task_data(self, examples: list, tokenizer: Tokenizer, max_length: int, **options: object) -> TaskData:
        """One split's examples as model rows (`options`: TaskData's, for sentence rows: siamese, sources, ...)."""
        return TaskData(self.name, examples, tokenizer, max_length, label_dtype=self.label_dtype, **options)

    def check_inputs(self, max_length: int, where: str) -> None:
        """Whether the kind's options can make model rows of `max_length` (model.max_length) tokens: a ConfigError
        naming the key where not. Asked when a config is checked, before any file is read; `where` is tasks.X."""
        return None  # sentence kinds truncate a row to max_length: any length serves them

    def pooling(self, chosen: Chosen | str) -> nn.Module:
        """What the head reads of the encoder's output: the task's pooling (tasks.X.pooling), sentence vectors."""
        return POOLINGS[POOLINGS.resolve(chosen).name]()

    def arrange(self, logits: Tensor, batch: Batch) -> Tensor:
        """The head's logits per model row -> per example (TaskModule.forward): the same where a row is an example;
        a kind whose example spans several rows (a question's choices) arranges them here."""
        return logits

    def check_config(self, task: object, where: str) -> None:
        """What the kind cannot take of a task's config (a TaskConfig at `where`), refused in one line naming the
        key when the config is checked: each unit or key that needs what the kind does not give (config_needs)."""
        for key, need in config_needs(task):
            if need not in self.gives:
                raise ConfigError(f"{where}.{key} needs {NEEDS[need]}; a {self.described} task has {self.has}")

    # --- outputs -> predictions ---
    @abstractmethod
    def score(self, logits: Tensor, loss: Loss, head: nn.Module) -> Tensor:
        """The one place logits become predictions on the label scale (TaskOutput.score)."""

    @abstractmethod
    def predict(self, output: TaskOutput) -> Tensor:
        """Model output -> what the prediction files hold."""

    @abstractmethod
    def soft(self, output: TaskOutput) -> Tensor:
        """What an ensemble averages and a teacher passes on."""

    @abstractmethod
    def decide(self, soft: np.ndarray) -> np.ndarray:
        """Soft outputs (averaged, say) -> predictions, as `predict` does for one model's output."""

    def buffers(self, count: int) -> tuple[np.ndarray, np.ndarray]:
        """Zeroed (predictions, soft outputs) for `count` examples, filled batch by batch."""
        return np.zeros(count, dtype=self.prediction_dtype), np.zeros(count, dtype=np.float64)

    def store(self, hard: np.ndarray, soft: np.ndarray, batch: Batch, output: TaskOutput) -> None:
        """One batch's predictions and soft outputs into the buffers, at its positions."""
        hard[batch.positions] = self.predict(output).cpu().numpy()
        soft[batch.positions] = self.soft(output).cpu().numpy()

    def collect(self, data: TaskData, hard: np.ndarray, soft: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The filled buffers -> (predictions, soft outputs) per example (rows that are parts of an example, such
        as a long sentence's windows, merged)."""
        return hard, soft

    # --- predictions for files and people ---
    def prediction_name(self, split: str) -> str:
        """The name of `split`'s prediction file in a run's predictions/."""
        return f"{self.file_prefix}-{split}-output.csv"

    def write_predictions(self, path: Path, examples: Sequence, predictions: np.ndarray) -> None:
        """A prediction file (`-`: standard output): CS224N's `id , prediction` rows, written whole or not at all."""
        path = check_output_file(path)
        rows = [f"{e.id} , {self.written(p)} \n" for e, p in zip(examples, predictions, strict=True)]
        write_output_text(path, f"id \t {self.prediction_header} \n" + "".join(rows))  # as write_predictions

    def detail(self, example: Example, prediction: object, soft: np.ndarray | None) -> dict:
        """One dev example as the report shows it (predictions/{task}-dev-details.jsonl)."""
        row = {"id": example.id, "texts": list(example.texts), "gold": example.label, "predicted": prediction.item()}
        if soft is not None:
            row["soft"] = soft.tolist()
        return row

    @abstractmethod
    def show(self, prediction: int | float) -> str:
        """A prediction for people."""

    @abstractmethod
    def written(self, prediction: int | float) -> str:
        """A prediction as its prediction file (and `minbert predict`) writes it."""

    @abstractmethod
    def named(self, predictions: list) -> list:
        """MultitaskBERT.predict(labels=True)'s answer."""

    @abstractmethod
    def answer(self, decided: np.ndarray, soft: np.ndarray) -> dict:
        """`serve`'s answer for one example (POST /predict/{task})."""

    # --- training ---
    @abstractmethod
    def divergence(self, a: TaskOutput, b: TaskOutput) -> Tensor:
        """How far two outputs for the same examples are apart (SMART, the Bregman proximal step)."""

    @abstractmethod
    def distillation_target(self, gold: Tensor, teacher: Tensor, share: float, temperature: float) -> Tensor:
        """(1 - share) * gold + share * teacher, in the form the task's loss takes."""

    @abstractmethod
    def strata(self, labels: np.ndarray) -> np.ndarray:
        """The groups a held-out share is drawn from evenly, so that it keeps the file's label distribution."""

    def row_strata(self, examples: Sequence[Example]) -> np.ndarray:
        """The groups of a file's rows that a held-out share (a tune split, a dev share) is drawn from evenly: the
        `strata` of their gold labels as the kind reads them (`labels`), so that data/ reads no label itself."""
        return self.strata(self.labels(examples))

    def dev_problem(self, examples: Sequence[Example]) -> str | None:
        """Why dev rows cannot be scored (None: they can)."""
        return None

    # --- serve (POST /predict/{task}, the / page) and `minbert predict`'s natural forms ---
    # An example in its natural form is a row of texts: (sentence,) or (sentence, sentence); tag's (text,); span's
    # (question, context); choice's (question, choice, ...). A request body or predict's flags give rows, serve's
    # limits check their texts, the batcher queues them, serve_examples makes the kind's examples of them and
    # serve_answers answers each (MultitaskBERT.answers: the one path of serve and predict).
    serve_form: ClassVar[str] = "sentence"  # the / page's form for the kind: sentence (one or two texts), tag, ...
    predict_flags: ClassVar[tuple[str, ...]] = ("--text",)  # the `minbert predict` flags that give its examples

    def serve_body(self) -> type[BaseModel]:
        """The body POST /predict/{task} takes: a pydantic model, so that a wrong body is a 422 naming the field."""
        return TaskRows

    def serve_rows(self, body: BaseModel) -> list[tuple[str, ...]]:
        """A validated body's examples as rows of texts, in order; a DataError (answered 422) for what the model
        does not say: a pair task takes `pairs`, a single-sentence task `texts`."""
        wanted, other = ("pairs", "texts") if self.is_pair else ("texts", "pairs")
        rows = getattr(body, wanted)
        if rows is None or getattr(body, other) is not None:
            raise DataError(f"task {self.name} takes `{wanted}`" + ("" if rows is None else f", not `{other}`"))
        return [tuple(row) if self.is_pair else (row,) for row in rows]

    def check_flags(self, given: dict[str, list[str]]) -> None:
        """`minbert predict`'s flags (each flag -> its values) that the kind does not take, refused in one line."""
        other = [flag for flag, values in given.items() if values and flag not in self.predict_flags]
        if other:
            raise ConfigError(f"task {self.name} ({self.described}) does not take {', '.join(other)}: give "
                              f"{' with '.join(self.predict_flags)}, or --input FILE")

    def predict_rows(self, given: dict[str, list[str]]) -> list[tuple[str, ...]]:
        """`minbert predict`'s flags (each flag -> its values, in order; free arguments count as --text) as rows of
        texts: sentence kinds take --text, `width` texts per example."""
        self.check_flags(given)
        if not self.spec.rows:  # a kind of other examples says how its flags make them (its own predict_rows)
            raise ConfigError(f"task {self.name} ({self.described}) predicts a file in its data format "
                              f"{self.spec.format.name!r}: give --input FILE (it takes no examples from flags yet)")
        texts, width = given.get("--text", []), len(self.format.text_columns)
        if not texts:
            raise DataError("give the text(s) to predict, or --input FILE")
        if len(texts) % width:
            raise DataError(f"task {self.name} takes {width} texts per example; got {len(texts)}")
        return [tuple(texts[i:i + width]) for i in range(0, len(texts), width)]

    def serve_examples(self, rows: Sequence[tuple[str, ...]], tokenizer: Tokenizer) -> list:
        """Rows of texts -> the examples task_data takes, named 1, 2, ... in order."""
        return [Example(str(i), tuple(row), None, i + 1) for i, row in enumerate(rows)]

    def serve_answers(self, examples: Sequence, decided: np.ndarray, soft: np.ndarray) -> list[dict]:
        """Each example's answer (serve's JSON, predict's natural forms) from `decide` and the soft outputs."""
        return [self.answer(d, s) for d, s in zip(decided, soft, strict=True)]

    def answer_lines(self, number: int, answer: dict) -> list[str]:
        """How `minbert predict` prints example `number`'s answer in a natural form (sentence kinds print their
        prediction file's text instead): a JSON line unless the kind says better."""
        return [json.dumps({"example": number, **answer}, ensure_ascii=False)]

    # --- evaluation, ensembles, exports ---
    @abstractmethod
    def analysis(self, predictions: np.ndarray, labels: np.ndarray) -> dict:
        """What metrics.json records beside the metrics for dev (the report's and the figures' views)."""

    def average(self, outputs: Sequence[np.ndarray], weights: Sequence[float] | None = None) -> np.ndarray:
        """The mean of several models' soft outputs (`soft`, as `collect` gives them) for the same examples,
        weighted by `weights` (one per model, summing to 1; None: equal): what an ensemble decides on and fits its
        weights by. Sentence kinds: arrays (examples[, classes]); a kind whose soft outputs are not one array
        (per-sentence word arrays, per-window logits) averages them its own way."""
        if weights is None:
            return sum(outputs) / len(outputs)
        return sum(w * o for w, o in zip(weights, outputs, strict=True))

    @abstractmethod
    def ensemble_loss(self, mean: np.ndarray, labels: np.ndarray) -> float:
        """A smooth objective of averaged soft outputs against gold labels (ensemble weights are fitted on it)."""

    def ensemble_key(self, max_length: int, tokenizer: str) -> dict[str, object]:
        """What the task's soft outputs are cut by beyond its spec, from a member run's model.max_length and its
        tokenizer's digest: an ensemble refuses members that differ in it before any work (a kind that averages
        per-window logits needs the same windows). Nothing where soft outputs are per example whatever the rows."""
        return {}

    @abstractmethod
    def export_entry(self) -> dict:
        """What an export's manifest records of the kind."""

    # the outputs of the task's exported head graph (ONNX), in graph_outputs' order
    graph_output_names: ClassVar[tuple[str, ...]] = ("logits", "score", "sentence_vectors")

    def graph_outputs(self, logits: Tensor, score: Tensor, vectors: Tensor) -> tuple[Tensor, ...]:
        """What the head graph gives of what the task's part computes: the head's logits per model row, their score
        (TaskModule.score) and the pooled vectors. Sentence kinds: all three ((B, K) or (B,) logits)."""
        return logits, score, vectors

    def graph_task_output(self, outputs: dict[str, Tensor], batch: Batch, siamese: bool) -> TaskOutput:
        """The head graph's outputs (by name) as TaskModule.forward's TaskOutput for `batch`, which prediction
        reads (a siamese task's sentence vectors are per sentence; batch.index pairs them)."""
        vectors = outputs["sentence_vectors"]
        embeddings = (vectors[batch.index[:, 0]], vectors[batch.index[:, 1]]) if siamese else (vectors,)
        return TaskOutput(outputs["logits"], outputs["score"], embeddings)

    # --- the report ---
    def report_view(self, result: dict, rows: list[dict] | None, limit: int) -> dict:
        """What the kind's report template (`report_template`) shows of its dev results, as plain data: `result` is
        the task's final_dev entry of metrics.json (its metrics and `analysis`), `rows` its dev details (`detail`'s
        rows in predictions/{task}-dev-details.jsonl; None in a run without them), `limit` the most examples to
        list. Texts from data stay plain strings: the template escapes them."""
        return {}
