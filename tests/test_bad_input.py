"""Bad input ends in one clear message (file, line, field where they apply) and a non-zero exit, never a traceback,
and is refused before a run directory is made. One test per defect found by trying minbert as a new user would."""

from __future__ import annotations

import subprocess
import sys

import pytest

import minbert
from minbert.cli import main, parse_args
from minbert.predictor import MultitaskBERT
from tests.conftest import SIAMESE_STS, make_tiny_data_dir, write_tiny_config


@pytest.fixture()
def config(tmp_path, tiny_model_dir):
    return write_tiny_config(tmp_path / "my.toml", tmp_path / "runs", tiny_model_dir)


@pytest.mark.parametrize(("override", "message"), [
    ("seed=-1", "seed = -1 must be in [0, 4294967295]"),
    ("seed=99999999999", "seed = 99999999999 must be in [0, 4294967295]"),
    ("train.betas=[2.0,3.0]", "train.betas = [2.0, 3.0]: each must be in [0, 1)"),
    ("train.betas=[0.9]", "train.betas = [0.9]: expected two numbers"),
    ("train.max_eval_examples=1", "train.max_eval_examples = 1 must be 0 (all) or at least 2"),
    ("train.lr=nan", "train.lr = nan is not a finite number"),
    ("train.lr=inf", "train.lr = inf is not a finite number"),
    ("tasks.sst.dropout=nan", "tasks.sst.dropout = nan is not a finite number"),
    ("train.eps=0", "train.eps = 0.0 must be > 0"),
    ("train.head_lr=1e9", "train.head_lr = 1000000000.0 must be in [0, 1]"),
    ("train.lr=2", "train.lr = 2.0 must be in [0, 1]"),
    ("model.max_length=100000", "model.max_length=100000 is more than the model's 64 position embeddings"),
    ("tasks.stt.pooling=mean", "tasks.stt has no `data` format; did you mean tasks.sst?"),
])
def test_impossible_values_stop_before_any_work(config, tiny_data_dir, override, message, capsys):
    assert main(["train", "--config", str(config), override, "--data-dir", str(tiny_data_dir)]) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert not (config.parent / "runs" / "my").exists()


def test_overrides_may_follow_options():
    args = parse_args(["train", "--data-dir", "D", "train.lr=1e-5", "--quick", "seed=3"])
    assert args.overrides == ["train.lr=1e-5", "seed=3"] and args.data_dir == "D" and args.quick
    args = parse_args(["predict", "--run", "R", "--task", "sts", "a", "--precision", "fp32", "b"])
    assert args.texts == ["a", "b"]


def test_unknown_options_are_still_refused(capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["train", "--data-dir", "D", "--lr", "3"])
    assert exit_info.value.code == 2 and "unrecognized arguments: --lr" in capsys.readouterr().err


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0  # and the malloc it runs on: this process is pytest's, on glibc
    assert capsys.readouterr().out.strip() == f"minbert {minbert.__version__} (malloc: glibc)"


# --- data files ------------------------------------------------------------------------------------------------

def data_dir_with(tmp_path, name: str, content: str):
    directory = make_tiny_data_dir(tmp_path / "data")
    (directory / name).write_text(content, encoding="utf-8")
    return directory


def sst_rows(*sentences: str) -> str:
    return "\tid\tsentence\tsentiment\n" + "".join(f"{i}\ts{i}\t{s}\t{i % 5}\n" for i, s in enumerate(sentences))


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """In a real process: a traceback would reach stderr instead of being caught by a test harness."""
    return subprocess.run([sys.executable, "-m", "minbert", *args], capture_output=True, text=True, timeout=300)


def test_a_huge_field_is_reported_with_its_line(tmp_path):
    directory = data_dir_with(tmp_path, "ids-sst-dev.csv", sst_rows("fine", "x" * 200_000, "good", "bad"))
    result = run_cli("data", "--data-dir", str(directory))
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert "ids-sst-dev.csv" in result.stdout and "3 rows loaded, 1 skipped" in result.stdout
    assert "line 3: a field of more than 131,072 characters" in result.stdout


def test_an_unclosed_quote_costs_its_own_row_only(tmp_path):
    directory = data_dir_with(tmp_path, "ids-sst-dev.csv", sst_rows("fine", '"unclosed and', "good", "bad"))
    result = run_cli("data", "--data-dir", str(directory), "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    import json

    report = json.loads(result.stdout)["ids-sst-dev.csv"]
    assert report["rows"] == 3 and [s["line"] for s in report["skipped"]] == [3]
    assert "quote" in report["skipped"][0]["reason"]


def test_a_header_only_dev_file_fails_data_and_train_before_any_work(tmp_path, tiny_model_dir):
    directory = data_dir_with(tmp_path, "ids-sst-dev.csv", "\tid\tsentence\tsentiment\n")
    result = run_cli("data", "--data-dir", str(directory))
    assert result.returncode == 1 and "ids-sst-dev.csv" in result.stdout and "no data rows" in result.stdout
    config = write_tiny_config(tmp_path / "my.toml", tmp_path / "runs", tiny_model_dir)
    result = run_cli("train", "--config", str(config), "--data-dir", str(directory))
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert "ids-sst-dev.csv: no rows to evaluate on" in result.stderr
    assert not (tmp_path / "runs" / "my").exists()


def test_a_one_row_similarity_dev_file_is_refused(tmp_path, tiny_model_dir, capsys):
    directory = data_dir_with(tmp_path, "sts-dev.csv", "\tid\tsentence1\tsentence2\tsimilarity\n0\tp0\ta\tb\t3.0\n")
    config = write_tiny_config(tmp_path / "my.toml", tmp_path / "runs", tiny_model_dir, tasks=SIAMESE_STS)
    assert main(["train", "--config", str(config), "--data-dir", str(directory)]) == 2
    assert "sts-dev.csv: 1 row; Pearson r needs at least 2 with different labels" in capsys.readouterr().err


# --- predicting with a finished run ----------------------------------------------------------------------------

PAIRS = "id\tsentence1\tsentence2\n" \
        "q1\thow do i learn python\thow can i learn python\n" \
        "q2\tonly one column\n" \
        "q3\ta\tb\tc\n" \
        "q4\t\tempty first\n" \
        "q5\twhy\n"


def predict_file(run, task, path, out, skip_bad_rows=False) -> tuple:
    """`predict --input PATH --output OUT`, then again with --skip-bad-rows when the first one refused."""
    refused = run_cli("predict", "--run", str(run), "--task", task, "--input", str(path), "--output", str(out))
    assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr[-3000:]
    assert not out.exists()
    skipped = run_cli("predict", "--run", str(run), "--task", task, "--input", str(path), "--output", str(out),
                      "--skip-bad-rows")
    assert skipped.returncode == 0, skipped.stderr[-3000:]
    return refused, skipped


def test_predict_input_refuses_malformed_rows_unless_told_to_skip(three_task_run, tmp_path):
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text(PAIRS)
    out = tmp_path / "out.csv"
    refused, result = predict_file(three_task_run, "quora", pairs, out)
    assert f"{pairs}:3:" in refused.stderr and "4 malformed rows" in refused.stderr
    assert "wrote 1 prediction" in result.stdout and "4 malformed rows skipped" in result.stdout
    lines = out.read_text().splitlines()
    assert len(lines) == 2 and lines[1].startswith("q1 , ")  # the input's own id


def test_predict_input_keeps_plain_line_numbers_as_ids(three_task_run, tmp_path):
    sentences = tmp_path / "sentences.txt"
    sentences.write_text("a great film\nan awful film\n")
    out = tmp_path / "out.csv"
    result = run_cli("predict", "--run", str(three_task_run), "--task", "sst", "--input", str(sentences),
                     "--output", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    assert [line.split(" , ")[0] for line in out.read_text().splitlines()[1:]] == ["1", "2"]


def test_predict_input_reports_blank_lines_as_bad_rows(three_task_run, tmp_path):
    """Each plain line is a text: a blank or whitespace-only one is not dropped without a word."""
    sentences = tmp_path / "sentences.txt"
    sentences.write_text("a great film\n\n  \t \nan awful film\n")
    out = tmp_path / "out.csv"
    refused, result = predict_file(three_task_run, "sst", sentences, out)
    assert f"{sentences}:2: blank line" in refused.stderr and "2 malformed rows in all (lines 2, 3)" in refused.stderr
    assert "2 malformed rows skipped" in result.stdout
    assert [line.split(" , ")[0] for line in out.read_text().splitlines()[1:]] == ["1", "4"]


@pytest.mark.parametrize("content", ["", "id\tsentence\n"])
def test_predict_input_with_no_rows_is_an_error(three_task_run, tmp_path, content):
    empty = tmp_path / "empty.tsv"
    empty.write_text(content)
    result = run_cli("predict", "--run", str(three_task_run), "--task", "sst", "--input", str(empty))
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert str(empty) in result.stderr and "no rows" in result.stderr


def test_predict_input_with_a_huge_field_names_its_line(three_task_run, tmp_path):
    big = tmp_path / "big.txt"
    big.write_text("fine\n" + "y" * 200_000 + "\n")
    result = run_cli("predict", "--run", str(three_task_run), "--task", "sst", "--input", str(big))
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert f"{big}:2: a field of more than 131,072 characters" in result.stderr


def test_predict_with_a_truncated_checkpoint_names_the_file(three_task_run, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(three_task_run, copy)
    weights = copy / "best" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    result = run_cli("predict", "--run", str(copy), "--task", "sst", "a fine film")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert f"{weights}: not a readable safetensors file" in result.stderr


def test_a_single_string_is_one_example(three_task_run):
    model = MultitaskBERT.load(three_task_run)
    one = model.predict_sentiment("Great")
    assert isinstance(one, int) and one == model.predict_sentiment(["Great"])[0]
    pair = ("how do i learn python", "how can i learn python")
    assert model.predict_paraphrase(pair) == model.predict_paraphrase([pair])[0]
    assert model.predict_similarity(pair) == pytest.approx(model.predict_similarity([pair])[0])


def test_a_list_of_strings_is_not_taken_for_pairs(three_task_run):
    model = MultitaskBERT.load(three_task_run)
    with pytest.raises(minbert.DataError, match="example 1: expected a pair of texts, got a str"):
        model.predict_paraphrase(["ab", "cd"])


# --- issue 24: limits and outputs checked before any work -------------------------------------------------------

def test_an_edited_config_is_refused_by_predict_and_evaluate(three_task_run, tmp_path):
    import shutil

    copy = tmp_path / "edited"
    shutil.copytree(three_task_run, copy)
    config = copy / "config.toml"
    text = config.read_text()
    assert 'pooling = "cls"' in text
    config.write_text(text.replace('pooling = "cls"', 'pooling = "mean"', 1))
    for command in (["predict", "--run", str(copy), "--task", "sst", "a fine film"],
                    ["evaluate", "--run", str(copy)]):
        result = run_cli(*command)
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
        assert f"{config} no longer matches the config the run was trained with" in result.stderr
        assert "pooling" in result.stderr


@pytest.mark.parametrize("command", ["predict", "report"])
def test_an_output_that_is_a_directory_is_refused_before_any_work(three_task_run, tmp_path, command):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(three_task_run, copy)
    target = tmp_path / "a-directory"
    target.mkdir()
    args = (["predict", "--run", str(copy), "--task", "sst", "a fine film", "--output", str(target)]
            if command == "predict" else ["report", str(copy), "--output", str(target)])
    result = run_cli(*args)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert f"--output {target}: is a directory" in result.stderr
    assert list(target.iterdir()) == [] and not list(tmp_path.glob(".*.tmp"))


@pytest.mark.parametrize("link", ["dangling", "loop"])
def test_data_reports_a_broken_symlink(tmp_path, link):
    directory = make_tiny_data_dir(tmp_path / "data")
    dev = directory / "ids-sst-dev.csv"
    dev.unlink()
    if link == "dangling":
        dev.symlink_to(directory / "no-such-file.csv")
    else:
        dev.symlink_to(directory / "ids-sst-dev.csv")  # points at itself
    result = run_cli("data", "--data-dir", str(directory))
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert "ids-sst-dev.csv" in result.stdout and "a symlink that cannot be read" in result.stdout, result.stdout


@pytest.mark.parametrize("budget", ["0", "1.5", "-0.25"])
def test_ablate_budget_outside_its_range_is_refused(tmp_path, config, budget, capsys):
    sweep = tmp_path / "sweep.toml"
    sweep.write_text(f'base = "{config}"\noutput_dir = "{tmp_path / "ablations"}"\n[variants]\nbaseline = []\n')
    assert main(["ablate", str(sweep), "--budget", budget]) == 2
    assert "budget must be a share of the training data in (0, 1]" in capsys.readouterr().err
    assert not (tmp_path / "ablations").exists()
