"""`minbert train --quick` of the default job and of every configs/seeds recipe, pinned to the last digit: a
refactor must not change a single dev figure. Floating-point results differ between kinds of CPU (AMX, AVX-512
BF16, AVX2: other kernels, other rounding), so the figures are pinned per kind in quick_pins.json and a kind with
no pins skips, saying so. Regenerate pins on a new kind, before a change, with

    python -m tests.integration.test_quick_pins
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import torch

from minbert.cli import main
from tests.conftest import REPO

# One worker runs every test that reads the --quick run, so that it is made once (pytest-xdist)
pytestmark = pytest.mark.xdist_group("quick_default_run")

PINS_FILE = Path(__file__).with_name("quick_pins.json")
CONFIGS = ["multitask.toml", *sorted(p.relative_to(REPO / "configs").as_posix()
                                     for p in (REPO / "configs" / "seeds").glob("*.toml"))]


def cpu_kind() -> str:
    cpu = torch.cpu
    if getattr(cpu, "_is_amx_tile_supported", lambda: False)():
        return "amx"
    if getattr(cpu, "_is_avx512_bf16_supported", lambda: False)():
        return "avx512_bf16"
    return torch.backends.cpu.get_cpu_capability().lower()


def epoch_figures(metrics: dict) -> list[dict]:
    """Every epoch's dev metrics of a run (exact floats)."""
    return [{task: result["score"] for task, result in epoch["dev"].items()} for epoch in metrics["epochs"]]


def quick_figures(config: str, data_dir: Path, out: Path) -> list[dict]:
    """Every epoch's dev metrics of the config's --quick run."""
    name = config.replace("/", "-").removesuffix(".toml")
    assert main(["train", "--quick", "--config", str(REPO / "configs" / config), "--data-dir", str(data_dir),
                 f"output_dir={out}", f"name={name}"]) == 0
    return epoch_figures(json.loads((out / name / "metrics.json").read_text()))


# The default job in every run of the suite (its one --quick run, which test_quick reads too: same thread count,
# same figures); the five recipes (five more minutes) when MINBERT_ALL_PINS is set.
@pytest.mark.parametrize("config", CONFIGS)
def test_quick_figures_do_not_change(config, request, data_dir, tmp_path):
    if config != "multitask.toml" and not os.environ.get("MINBERT_ALL_PINS"):
        pytest.skip("the configs/seeds recipes are pinned too: run with MINBERT_ALL_PINS=1 (about 6 minutes)")
    pins = json.loads(PINS_FILE.read_text()).get(cpu_kind(), {})
    if config not in pins:
        pytest.skip(f"no pinned --quick figures for {config} on this kind of CPU ({cpu_kind()})")
    if config == "multitask.toml":
        figures = epoch_figures(request.getfixturevalue("quick_default_metrics"))
    else:
        request.getfixturevalue("embedded_dir")  # every thread, as the pins were made
        figures = quick_figures(config, data_dir, tmp_path)
    assert figures == pins[config]


if __name__ == "__main__":  # pin this CPU kind's figures with the code as it is now
    import tempfile

    from tests.conftest import ALL_THREADS

    torch.set_num_threads(ALL_THREADS)
    data_dir = REPO.parent / "shared" / "data"
    pins = json.loads(PINS_FILE.read_text()) if PINS_FILE.exists() else {}
    chosen = sys.argv[1:] or CONFIGS
    with tempfile.TemporaryDirectory() as out:
        for config in chosen:
            pins.setdefault(cpu_kind(), {})[config] = quick_figures(config, data_dir, Path(out))
            print(config, pins[cpu_kind()][config], flush=True)
    PINS_FILE.write_text(json.dumps(pins, indent=1, sort_keys=True) + "\n")
