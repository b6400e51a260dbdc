"""Weight averaging (`[train.techniques.ema]`, `[train.techniques.swa]`): the averages' closed forms, the choice of
the better weights at an epoch's end (and the best checkpoint holding them), and an exact resume."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file

from minbert import BertModel
from minbert.cli import main
from minbert.tasks.config import TaskConfig
from minbert.tasks.model import MultitaskModel
from minbert.training import loop
from minbert.training.averaging import ExponentialMovingAverage, StochasticWeightAveraging
from minbert.training.checkpoint import list_checkpoints
from tests.conftest import THREE_TASKS, tiny_config, write_tiny_config
from tests.faults import run_with_fault


def tiny_model() -> MultitaskModel:
    torch.manual_seed(0)
    return MultitaskModel(BertModel(tiny_config()), {"sst": TaskConfig(data="sst")})


def started(hook, model: MultitaskModel, **trainer) -> SimpleNamespace:
    """A stand-in for the Trainer (what the hooks read), with the hook's stage begun."""
    stub = SimpleNamespace(model=model, candidates={}, stage=0, **trainer)
    hook.stage_started(stub)
    return stub


def drive(hook, stub: SimpleNamespace, values: list[float]) -> None:
    """Set every trainable weight to values[k] before update k, as training would move them."""
    for step, value in enumerate(values, start=1):
        with torch.no_grad():
            for p in stub.model.parameters():
                if p.requires_grad:
                    p.fill_(value)
        stub.stage_step = step
        hook.after_update(stub, {})


def first_averaged(hook, model: MultitaskModel) -> torch.Tensor:
    """The average of the model's first trainable parameter."""
    return next(a for a, p in zip(hook.average.parameters(), model.parameters(), strict=True) if p.requires_grad)


def test_ema_of_a_known_sequence_is_its_closed_form():
    model = tiny_model()
    start = next(p for p in model.parameters() if p.requires_grad).detach().clone()
    decay, values = 0.8, [1.0, -2.0, 0.5, 3.0, 0.25]
    hook = ExponentialMovingAverage(ExponentialMovingAverage.Options(decay=decay))
    drive(hook, started(hook, model), values)
    n = len(values)
    expected = decay**n * start + sum((1 - decay) * decay ** (n - k) * v for k, v in enumerate(values, start=1))
    averaged = first_averaged(hook, model)
    torch.testing.assert_close(averaged, expected, rtol=1e-6, atol=1e-6)
    assert hook.count == n


def test_ema_every_k_updates_skips_the_others():
    model = tiny_model()
    hook = ExponentialMovingAverage(ExponentialMovingAverage.Options(decay=0.5, every=2))
    drive(hook, started(hook, model), [4.0, 8.0, 16.0, 32.0])  # averaged at updates 2 and 4 only
    averaged = first_averaged(hook, model)
    start = next(p for p in tiny_model().parameters() if p.requires_grad)
    torch.testing.assert_close(averaged, 0.25 * start + 0.25 * 8.0 + 0.5 * 32.0, rtol=1e-6, atol=1e-6)


def test_swa_is_the_mean_of_the_samples_of_the_last_epochs():
    model = tiny_model()
    hook = StochasticWeightAveraging(StochasticWeightAveraging.Options(epochs=1, every=2))
    stub = started(hook, model, stages=[SimpleNamespace(epochs=2)], epoch=0)
    drive(hook, stub, [100.0, 100.0])  # the first of two epochs: not averaged
    assert hook.count == 0
    stub.epoch = 1
    drive(hook, stub, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0])  # sampled at updates 2, 4 and 6
    averaged = first_averaged(hook, model)
    torch.testing.assert_close(averaged, torch.full_like(averaged, (2.0 + 4.0 + 6.0) / 3), rtol=0, atol=1e-6)


def ema_config(path, out, model_dir, epochs=1, extra=""):
    return write_tiny_config(path, out, model_dir, tasks=THREE_TASKS,
                             train=f"epochs = {epochs}\nbatch_size = 4\ncheckpoint_every = 3\n"
                                   f"techniques = {{ ema = {{ decay = 0.9 }} }}\n{extra}")


def test_the_better_weights_are_the_epochs_and_the_best_checkpoint_holds_them(tmp_path, tiny_model_dir,
                                                                                tiny_data_dir, monkeypatch):
    """Evaluation rigged so that the average always scores higher: the record says so and keeps the raw figures,
    and best/ holds the EMA's weights (those the last checkpoint keeps under ema.*)."""
    evaluate = loop.Trainer.evaluate

    def rigged(self, split="dev", model=None):
        results = evaluate(self, split, model)
        if model is not None:
            for result in results.values():
                result["score"] = min(result["score"] + 0.05, 1.0)
        return results

    monkeypatch.setattr(loop.Trainer, "evaluate", rigged)
    config = ema_config(tmp_path / "c.toml", tmp_path, tiny_model_dir)
    assert main(["train", "--config", str(config), "--data-dir", str(tiny_data_dir), "name=ema"]) == 0
    metrics = json.loads((tmp_path / "ema" / "metrics.json").read_text())
    record = metrics["epochs"][0]
    assert record["weights"] == "ema" and metrics["best"]["weights"] == "ema"
    assert record["selection_score"] == record["averages"]["ema"]["selection_score"] > record["raw"]["selection_score"]
    best = load_file(tmp_path / "ema" / "best" / "model.safetensors")
    last = load_file(list_checkpoints(tmp_path / "ema")[-1] / "tensors.safetensors")
    ema = {k.removeprefix("ema."): v for k, v in last.items() if k.startswith("ema.")}
    raw = {k.removeprefix("model."): v for k, v in last.items() if k.startswith("model.")}
    assert set(best) == set(ema)
    assert all(torch.equal(best[k], ema[k]) for k in best)
    assert any(not torch.equal(best[k], raw[k]) for k in best)


# stopped in the first of two epochs (36 steps each) for EMA, in the second (where SWA samples) for SWA
@pytest.mark.parametrize(("technique", "stop"), [("ema = { decay = 0.9 }", 16), ("swa = { every = 2 }", 50)])
def test_resume_with_averaging_on_is_exact(tmp_path, tiny_model_dir, tiny_data_dir, technique, stop):
    config = write_tiny_config(tmp_path / "c.toml", tmp_path, tiny_model_dir, tasks=THREE_TASKS,
                               train=f"epochs = 2\nbatch_size = 4\ncheckpoint_every = 3\n"
                                     f"techniques = {{ {technique} }}")
    assert main(["train", "--config", str(config), "--data-dir", str(tiny_data_dir), "name=straight"]) == 0
    stopped = run_with_fault(f"signal@step-{stop}:SIGINT", "train", "--config", str(config), "--data-dir",
                             str(tiny_data_dir), "name=stopped")
    assert stopped.returncode == 130, stopped.stderr
    assert main(["train", "--resume", str(tmp_path / "stopped"), "--data-dir", str(tiny_data_dir)]) == 0
    assert json.loads((tmp_path / "stopped" / "metrics.json").read_text())["resumed_from"]["step"] == stop
    a, b = (load_file(list_checkpoints(tmp_path / name)[-1] / "tensors.safetensors") for name in ("straight",
                                                                                                  "stopped"))
    averaged = [k for k in a if k.startswith(("ema.", "swa."))]
    assert averaged and set(a) == set(b)
    worst = max((a[k].float() - b[k].float()).abs().max().item() for k in a if k.startswith(("model.", "ema.",
                                                                                              "swa.")))
    assert worst <= 1e-6
    ma, mb = (json.loads((tmp_path / n / "metrics.json").read_text()) for n in ("straight", "stopped"))
    assert [e.get("averages") for e in ma["epochs"]] == [e.get("averages") for e in mb["epochs"]]
    assert ma["final_dev"] == mb["final_dev"]
