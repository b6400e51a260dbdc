"""A distilling run's teachers: checked before any work, and their soft outputs on the training examples computed
once, cached in the run directory (`teacher/<task>.npy`, keyed by the teacher's weights and the examples) and
attached to the training data, where the loop's distillation reads them (minbert.training.distillation)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import numpy as np

from minbert.data.batching import TaskData
from minbert.data.spec import data_key
from minbert.errors import ConfigError
from minbert.runs.ensemble import Ensemble, member_runs
from minbert.tasks.kinds import kind_of, refuse
from minbert.training.config import RunConfig, teachers_of

log = logging.getLogger("minbert")


def check_teachers(config: RunConfig) -> None:
    """Before any work: every teacher is a finished run or ensemble that has the task's data set."""
    for task, teacher in teachers_of(config).items():
        refuse(kind_of(task, config.tasks[task]), "distillation")
        data = data_key(task, config.tasks[task].data)
        if data not in Ensemble([teacher]).data_sets:
            raise ConfigError(f"tasks.{task}: the teacher {teacher} has no {data} task")


def cache_key(teacher: str, data: TaskData) -> str:
    digest = hashlib.sha256()
    for run in member_runs(teacher):
        weights = run / "best" / "model.safetensors"
        digest.update(f"{run}\0{weights.stat().st_size}\0{weights.stat().st_mtime_ns}\0".encode())
    for example in data.examples:
        digest.update(("\0".join((example.id, *example.texts)) + "\n").encode())
    return digest.hexdigest()


def attach_teacher_outputs(config: RunConfig, data: dict[str, dict[str, TaskData]], cache_dir: Path | None,
                           write: bool = True) -> None:
    """Set `TaskData.teacher` (soft outputs per training example) for every task with a teacher, from the cache in
    `cache_dir` when it holds this teacher's outputs for these examples, else computed and cached (`write`)."""
    for task, teacher in teachers_of(config).items():
        train = data[task]["train"]
        key = cache_key(teacher, train)
        path = cache_dir / f"{task}.npy" if cache_dir else None
        meta = path.with_suffix(".json") if path else None
        if path and path.exists() and meta.exists() and json.loads(meta.read_text())["key"] == key:
            train.teacher = np.load(path)
            log.info("%s: teacher outputs read from %s", task, path)
            continue
        log.info("%s: computing the teacher's outputs on %d training examples (%s)", task, len(train), teacher)
        data_set = data_key(task, config.tasks[task].data)
        outputs = Ensemble([teacher]).outputs({data_set: train.examples})[data_set]
        train.teacher = outputs.astype(np.float32)
        if path and write:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".tmp-{path.name}")
            np.save(tmp, train.teacher)
            os.replace(tmp, path)  # complete or absent: a killed run never leaves half a cache
            meta.write_text(json.dumps({"key": key, "teacher": teacher}) + "\n", encoding="utf-8")
