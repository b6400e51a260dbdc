"""What a lent GPU machine needs for bench/gpu_session.sh, packed here so that one device call carries it.

The GPU machine reaches nothing outside (no PyPI, no Hub) and gets the working tree plus at most 64 MiB of carried
paths. Its Python (3.12) already has torch with CUDA, transformers, numpy, scipy, scikit-learn, matplotlib,
tensorboard, jinja2, pyarrow, xxhash, filelock, tokenizers, safetensors and rich; the default job needs a few more
packages, its data files and the embedded MiniLM, whose 91 MB of fp32 weights alone are over that limit:

    .venv/bin/python bench/gpu_session.py prepare [--data-dir DIR]   # here: writes .gpu/ (git-ignored)
    python3 bench/gpu_session.py restore-model .gpu/model DIR        # there (gpu_session.sh does it)

`prepare` writes .gpu/wheels/ (the missing packages, for CPython 3.12 on x86-64 Linux), .gpu/data.tar.xz (the
default job's files from the data directory: never part of the repository), and .gpu/model/ (the embedded model
with its weights stored in fp16 and xz: 41 MB, rounded once; `restore-model` widens them back to fp32, so the run starts
from MiniLM's weights to within fp16's rounding, 2^-11 relative, which its report names), git-ignored by the
repository's .gitignore. Then the device call: `run(command="bash bench/gpu_session.sh", carry=[".gpu"])`.
"""

from __future__ import annotations

import argparse
import lzma
import shutil
import subprocess
import sys
import tarfile
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STAGING = ROOT / ".gpu"
WEIGHTS = "model.safetensors.xz"
MARKER = "PREPARED"  # the file that says a staging folder is this script's own
CARRY_LIMIT = 64 * 2**20  # the device call's limit on the working tree and the carried paths together
# minbert's runtime packages that the GPU machine's image lacks (the device notes list what it has), and
# theirs; each at the version installed here. seqeval ships no wheel: one is built here (pure Python).
MISSING = ["nltk", "tomli-w", "plotly", "pydantic", "pydantic-core", "annotated-types", "typing-inspection"]
BUILT_HERE = ["seqeval"]
# What configs/multitask.toml reads (train, dev and test of its three tasks, and its extra files).
DEFAULT_JOB_FILES = ["ids-sst-train.csv", "ids-sst-dev.csv", "ids-sst-test-student.csv", "quora-train.csv",
                     "quora-dev.csv", "quora-test-student.csv", "sts-train.csv", "sts-dev.csv",
                     "sts-test-student.csv", "extra/sst-train-trees.txt", "extra/sick.tsv"]
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "manylinux1_x86_64"]


def fetch_wheels(target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    pinned = [f"{name}=={version(name)}" for name in MISSING]
    platforms = [flag for platform in PLATFORMS for flag in ("--platform", platform)]
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                    "--python-version", "3.12", "--implementation", "cp", *platforms, "-d", str(target), *pinned],
                   check=True)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(target),
                    *[f"{name}=={version(name)}" for name in BUILT_HERE]], check=True)


def pack_data(data_dir: Path, archive: Path) -> None:
    missing = [name for name in DEFAULT_JOB_FILES if not (data_dir / name).is_file()]
    if missing:
        sys.exit(f"gpu_session.py: {data_dir}: missing {', '.join(missing)} (the default job reads them)")
    with tarfile.open(archive, "w:xz") as tar:
        for name in DEFAULT_JOB_FILES:
            tar.add(data_dir / name, arcname=name)


def half_model(source: Path, target: Path) -> float:
    """The model directory `source` copied to `target` with its floating-point weights in fp16; returns the
    largest relative rounding of a weight whose magnitude fp16 holds as a normal number."""
    import torch
    from safetensors.torch import load_file, save

    shutil.copytree(source, target, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("model.safetensors", "*.bin", "README.md", "data_config.json"))
    weights = load_file(source / "model.safetensors")
    halved = {k: v.half() if v.is_floating_point() else v for k, v in weights.items()}
    # xz takes a further 10% off fp16 weights (45 -> 41 MB): the headroom under the call's limit
    (target / WEIGHTS).write_bytes(lzma.compress(save(halved, metadata={"format": "pt"})))
    worst = 0.0
    for key, value in weights.items():
        if value.is_floating_point():
            normal = value.abs() >= torch.finfo(torch.float16).tiny
            if normal.any():
                error = ((halved[key].float() - value).abs() / value.abs())[normal].max()
                worst = max(worst, float(error))
    return worst


def restore_model(source: Path, target: Path) -> None:
    """`source` (a half_model copy) to `target` with fp32 weights again, as minbert's checkpoints hold them."""
    from safetensors.torch import load, save_file

    shutil.copytree(source, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns(WEIGHTS))
    weights = load(lzma.decompress((source / WEIGHTS).read_bytes()))
    save_file({k: v.float() if v.is_floating_point() else v for k, v in weights.items()},
              target / "model.safetensors", metadata={"format": "pt"})


def travelling_bytes(staging: Path) -> int:
    """What the device call sends: tracked and untracked-not-ignored files, and the staging folder."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True).stdout.split(b"\0")
    files = [ROOT / name.decode() for name in listed if name]
    return sum(f.stat().st_size for f in files if f.is_file()) + sum(
        f.stat().st_size for f in staging.rglob("*") if f.is_file())


def prepare(data_dir: str | None, staging: Path) -> None:
    from minbert.data.spec import resolve_data_dir
    from minbert.model_dir import embedded_model_path

    if staging.exists():  # rebuilt whole, but only a folder this script made (an earlier .gpu/ may hold other work)
        if not (staging / MARKER).exists():
            sys.exit(f"gpu_session.py: {staging} exists and was not made by this script: move it away first")
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    (staging / MARKER).write_text("made by bench/gpu_session.py prepare; rebuilt whole by it\n", encoding="utf-8")
    fetch_wheels(staging / "wheels")
    pack_data(resolve_data_dir(data_dir), staging / "data.tar.xz")
    worst = half_model(embedded_model_path(), staging / "model")
    (staging / "model" / "ROUNDED.txt").write_text(
        f"weights stored in fp16 to travel; largest relative rounding of a normal weight: {worst:.2e}\n",
        encoding="utf-8")
    size = travelling_bytes(staging)
    print(f"{staging}: ready; the device call sends {size / 2**20:.1f} MiB of its {CARRY_LIMIT / 2**20:.0f}; "
          f"weights rounded to fp16 by at most {worst:.1e} (relative)")
    if size > CARRY_LIMIT:
        sys.exit("gpu_session.py: over the device call's limit: the call would be refused")
    print('next: run(command="bash bench/gpu_session.sh", carry=[".gpu"], timeout_s=540)')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    prep = sub.add_parser("prepare", help="here: build .gpu/ (wheels, data archive, fp16 model)")
    prep.add_argument("--data-dir", default=None, help="the data directory (default: minbert's usual search)")
    prep.add_argument("--to", type=Path, default=STAGING,
                      help="the staging folder (default: .gpu/ in the checkout, which the device call carries)")
    restore = sub.add_parser("restore-model", help="there: the fp16 model back to fp32")
    restore.add_argument("source", type=Path)
    restore.add_argument("target", type=Path)
    args = parser.parse_args()
    if args.command == "prepare":
        prepare(args.data_dir, args.to.resolve())
    else:
        restore_model(args.source, args.target)


if __name__ == "__main__":
    main()
