"""What the command line prints loses nothing: whole option summaries, whole run names, class names, sentences."""

from __future__ import annotations

import csv
import inspect
import random

import pytest

import deepwell
from deepwell.config import _REGISTRIES, registry

pytestmark = pytest.mark.usefixtures("single_thread")


def test_options_print_every_summary_whole_with_its_brackets(cli):
    code, out, _ = cli("options")
    assert code == 0
    text = " ".join(out.split())
    assert "area fraction uniform in [scale_min, 1], resized" in text  # rich once read '[scale_min, 1]' as markup
    for kind in _REGISTRIES:
        entries = registry(kind)
        for name in entries.names():
            doc = inspect.getdoc(entries._entry(name).factory) or ""
            summary = " ".join(doc.split("\n\n")[0].split())
            assert summary in text, f"{kind} {name}: summary cut"


def test_runs_fold_long_names_instead_of_cutting_them(cli, tmp_path, monkeypatch):
    name = "mnist1d-cnn1d-a-rather-long-run-name-20261207-101500-with-a-suffix"
    run = deepwell.train(overrides=["data.source=moons:n=100", "train.epochs=1", f"output.dir={tmp_path}",
                                    f"output.name={name}", "output.report=false"], progress="none")
    monkeypatch.setenv("COLUMNS", "80")
    code, out, _ = cli("runs", "--dir", str(run.path.parent))
    assert code == 0 and max(len(line) for line in out.splitlines()) <= 80
    assert name in "".join(line.split("│")[1].strip() for line in out.splitlines() if line.count("│") > 2)


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("text")
    rng = random.Random(0)
    words = {"positive": ["good", "great", "lovely"], "negative": ["bad", "awful", "dull"]}
    with open(folder / "reviews.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["review", "sentiment"])
        for _ in range(80):
            label = rng.choice(sorted(words))
            writer.writerow([" ".join(rng.choice(words[label] + ["the", "film"]) for _ in range(5)), label])
    return deepwell.train(overrides=[f"data.source=csv_text:path={folder / 'reviews.csv'},text=review,target=sentiment",
                                     "train.epochs=15", f"output.dir={folder}", "output.name=run", "output.report=false"],
                          progress="none")


def test_predict_reads_a_text_runs_csv_and_answers_with_class_names(cli, text_run, tmp_path):
    new = tmp_path / "new.csv"
    new.write_text("review,stars\na great and lovely film,5\nan awful dull film,1\n")
    code, out, err = cli("predict", str(text_run.path), "-i", str(new))
    assert code == 0, err
    rows = list(csv.reader(out.splitlines()))
    assert rows[0] == ["prediction", "p_negative", "p_positive"]
    assert [row[0] for row in rows[1:]] == ["positive", "negative"]


def test_predict_takes_one_example_without_a_batch_dimension(tmp_path, cli):
    run = deepwell.train(overrides=["data.source=moons:n=100", "train.epochs=1", f"output.dir={tmp_path}",
                                    "output.name=moons", "output.report=false"], progress="none")
    one = run.predict([0.5, 0.2])
    assert one.shape == (1,) and one.item() == run.predict([[0.5, 0.2]]).item()
    (tmp_path / "one.csv").write_text("x0,x1\n0.5,0.2\n")
    code, out, err = cli("predict", str(run.path), "-i", str(tmp_path / "one.csv"))
    assert code == 0, err
    assert out.splitlines()[1].split(",")[0] == run.meta["class_names"][one.item()]


def test_text_augmentation_preview_prints_the_sentences(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = cli("augment", "--preview", "-a", "swap:1", "--text", "The quick brown fox", "--count", "2")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["original", "the", "quick", "brown", "fox"]
    assert [line.split()[0] for line in lines[1:]] == ["#1", "#2"]
    assert all(sorted(line.split()[1:]) == ["brown", "fox", "quick", "the"] for line in lines[1:])  # swapped words
    assert not list(tmp_path.glob("*.png"))  # no PNG written over augment-preview.png
