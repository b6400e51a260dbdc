"""Our AdamW against torch.optim.AdamW, and its foreach path against its simple path."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from minbert import AdamW
from minbert.optim import decay_groups


def regression_problem(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(64, 10, generator=g)
    y = x @ torch.randn(10, 3, generator=g) + 0.1 * torch.randn(64, 3, generator=g)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(10, 16), nn.Tanh(), nn.Linear(16, 3))
    return model, x, y


def two_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    first, second = model[0], model[2]
    return [{"params": list(first.parameters()), "weight_decay": weight_decay},
            {"params": list(second.parameters()), "lr": 3e-3, "weight_decay": weight_decay / 2}]


def train(model, optimizer, x, y, steps: int) -> None:
    for _ in range(steps):
        optimizer.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        optimizer.step()


def max_param_diff(a: nn.Module, b: nn.Module) -> float:
    return max((p - q).abs().max().item() for p, q in zip(a.parameters(), b.parameters(), strict=True))


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
@pytest.mark.parametrize("foreach", [False, True])
def test_matches_torch_adamw_over_100_steps(weight_decay, foreach):
    model, x, y = regression_problem()
    reference = copy.deepcopy(model)
    ours = AdamW(two_groups(model, weight_decay), lr=1e-2, eps=1e-6, foreach=foreach)
    torchs = torch.optim.AdamW(two_groups(reference, weight_decay), lr=1e-2, eps=1e-6)
    train(model, ours, x, y, 100)
    train(reference, torchs, x, y, 100)
    diff = max_param_diff(model, reference)
    print(f"AdamW vs torch (wd={weight_decay}, foreach={foreach}): max abs diff {diff:.2e}")
    assert diff < 1e-6
    assert max_param_diff(model, regression_problem()[0]) > 1e-2  # it did train


def test_foreach_is_bitwise_equal_to_simple_path():
    model, x, y = regression_problem(1)
    twin = copy.deepcopy(model)
    train(model, AdamW(decay_groups(model, 0.01), lr=1e-3, foreach=False), x, y, 30)
    train(twin, AdamW(decay_groups(twin, 0.01), lr=1e-3, foreach=True), x, y, 30)
    assert max_param_diff(model, twin) == 0.0


def test_fused_path_equals_simple_path_up_to_rounding():
    model, x, y = regression_problem(3)
    twin = copy.deepcopy(model)
    train(model, AdamW(decay_groups(model, 0.01), lr=1e-3, foreach=False), x, y, 30)
    train(twin, AdamW(decay_groups(twin, 0.01), lr=1e-3, fused=True), x, y, 30)  # lr and steps vary: no recompile
    diff = max_param_diff(model, twin)
    print(f"fused vs simple AdamW after 30 steps: max abs diff {diff:.2e}")
    assert diff < 1e-6
    assert max_param_diff(twin, regression_problem(3)[0]) > 1e-2  # it did train


def test_fused_path_compiles_every_parameter_set_a_multitask_step_updates():
    """Steps that update different parameter sets (a task's head, its own layers) need a compiled variant each:
    twelve sets, past dynamo's default limit of 8, all compiled, and each update equal to the simple path's."""
    from torch._dynamo.eval_frame import _debug_get_cache_entry_list

    from minbert import optim

    torch._dynamo.reset()
    torch.manual_seed(0)
    sizes = range(3, 15)
    fused = [nn.Parameter(torch.randn(n)) for n in sizes]
    simple = [nn.Parameter(p.detach().clone()) for p in fused]
    optimizers = AdamW([{"params": fused}], lr=1e-2, fused=True), AdamW([{"params": simple}], lr=1e-2)
    for i in range(len(fused)):  # step i updates the first i + 1 parameters only
        for params, optimizer in zip((fused, simple), optimizers, strict=True):
            for j, p in enumerate(params):
                p.grad = torch.full_like(p, 0.5) if j <= i else None
            optimizer.step()
    assert len(_debug_get_cache_entry_list(optim._update_tensors.__code__)) == len(fused)
    assert max((a - b).abs().max().item() for a, b in zip(fused, simple, strict=True)) < 1e-6


def test_state_dict_round_trip_continues_identically():
    model, x, y = regression_problem(2)
    optimizer = AdamW(two_groups(model, 0.05), lr=1e-2)
    train(model, optimizer, x, y, 50)
    resumed_model = copy.deepcopy(model)
    resumed = AdamW(two_groups(resumed_model, 0.05), lr=1e-2)
    resumed.load_state_dict(copy.deepcopy(optimizer.state_dict()))
    train(model, optimizer, x, y, 50)
    train(resumed_model, resumed, x, y, 50)
    assert max_param_diff(model, resumed_model) == 0.0
    assert resumed.state_dict()["state"][0]["step"] == 100


def test_without_bias_correction_follows_the_plain_update():
    p = nn.Parameter(torch.tensor([1.0, -2.0]))
    optimizer = AdamW([p], lr=0.1, betas=(0.9, 0.99), eps=1e-6, weight_decay=0.0, correct_bias=False)
    p.grad = torch.tensor([0.5, 0.25])
    optimizer.step()
    m = 0.1 * p.grad
    v = 0.01 * p.grad**2
    expected = torch.tensor([1.0, -2.0]) - 0.1 * m / (v.sqrt() + 1e-6)
    torch.testing.assert_close(p.detach(), expected)


def test_parameters_without_gradients_are_left_alone():
    used, unused = nn.Parameter(torch.ones(2)), nn.Parameter(torch.ones(2))
    optimizer = AdamW([used, unused], lr=0.1, weight_decay=0.5)
    used.grad = torch.ones(2)
    optimizer.step()
    assert torch.equal(unused.detach(), torch.ones(2))
    assert unused not in optimizer.state


def test_decay_groups_exclude_biases_and_layernorm():
    model = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4))
    decay, no_decay = decay_groups(model, 0.01)
    assert [p.shape for p in decay["params"]] == [torch.Size([4, 4])]
    assert len(no_decay["params"]) == 3 and no_decay["weight_decay"] == 0.0


@pytest.mark.parametrize("kwargs", [{"lr": -1.0}, {"betas": (1.0, 0.9)}, {"eps": -1e-8}, {"weight_decay": -0.1}])
def test_rejects_impossible_hyperparameters(kwargs):
    with pytest.raises(ValueError, match="invalid"):
        AdamW([nn.Parameter(torch.ones(1))], **kwargs)
