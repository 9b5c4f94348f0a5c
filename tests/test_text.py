"""Text data: tokens and a vocabulary fitted on the training split only, the embedding models, the text
augmentations (synonyms checked against WordNet itself), bad input, and `deepwell train` end to end."""

from __future__ import annotations

import csv
import random
import sys
from pathlib import Path

import pytest
import torch

from deepwell.config import DataSpec, ModelSpec
from deepwell.data import prepare_data
from deepwell.data.augment import build_augmentation
from deepwell.data.augment.text import load_wordnet, read_synonym_file
from deepwell.data.text import PAD_ID, UNK, UNK_ID, TextEncoding, tokenize
from deepwell.errors import ConfigError, DataError
from deepwell.models.network import build_model

pytestmark = pytest.mark.usefixtures("single_thread")

WORDNET = Path("/usr/share/wordnet")
needs_wordnet = pytest.mark.skipif(not (WORDNET / "index.noun").is_file(),
                                   reason="Debian's wordnet-base is not installed (apt-get install wordnet-base)")
POSITIVE = "good great wonderful excellent fine happy lovely superb".split()
NEGATIVE = "bad awful terrible poor sad dreadful horrible nasty".split()
FILLER = "the film was a movie and it plot acting story really quite".split()


def write_reviews(path: Path, n: int = 160, unique_words: bool = False) -> Path:
    """A sentiment CSV: filler words plus two words of the row's class; optionally one word used by no other row."""
    rng = random.Random(0)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "review", "sentiment"])
        for i in range(n):
            label = i % 2
            words = rng.sample(FILLER, 4) + rng.sample(POSITIVE if label else NEGATIVE, 2) + ([f"only{i}x"] if unique_words else [])
            rng.shuffle(words)
            writer.writerow([i, " ".join(words).capitalize() + ".", "pos" if label else "neg"])
    return path


def test_tokenize_lower_cases_words_and_keeps_inner_apostrophes():
    assert tokenize("Don't PANIC, it's 42!  Café-au-lait") == ["don't", "panic", "it's", "42", "café", "au", "lait"]


def test_encode_pads_truncates_and_maps_unknown_words():
    encoding = TextEncoding.from_texts(["a b c", "d"], max_length=3)
    ids = encoding.encode(["a b c d", "d zz", "c"])
    assert ids.dtype == torch.float32 and ids.shape == (3, 3)
    assert encoding.decode(ids) == ["a b c", f"d {UNK}", "c"]  # cut after max_length; unseen word -> <unk>
    assert ids[1, 2] == PAD_ID and ids[1, 1] == UNK_ID


def test_fit_keeps_min_count_and_the_most_frequent_words():
    raw = TextEncoding.from_texts(["a a a b b c d"], max_length=7, min_count=2)
    x = raw.encode(["a a a b b c d"])
    assert raw.fit(x).tokens[2:] == ("a", "b")  # c, d seen once
    capped = TextEncoding.from_texts(["a a a b b c d"], max_length=7, max_size=1).fit(x)
    assert capped.tokens[2:] == ("a",)
    assert capped.decode(capped.adapt(x, raw)) == [" ".join(["a"] * 3 + [UNK] * 4)]


def test_vocabulary_is_fitted_on_the_training_split_only(tmp_path):
    path = write_reviews(tmp_path / "reviews.csv", n=60, unique_words=True)
    splits = prepare_data(DataSpec(source=f"csv_text:path={path},text=review,target=sentiment,max_length=10",
                                   val_fraction=0.2), seed=0)
    vocabulary = set(splits.encoding.tokens[2:])
    train_words = {word for text in splits.encoding.decode(splits.x_train) for word in text.split()}
    assert vocabulary == train_words  # every vocabulary word comes from the training texts ...
    held_out = splits.encoding.decode(torch.cat([splits.x_val, splits.x_test]))
    assert len(held_out) == 60 - len(splits.x_train) and all(UNK in text for text in held_out)  # ... a held-out text's own word is <unk>
    assert splits.class_names == ["neg", "pos"] and splits.input_shape == (10,)


@pytest.mark.parametrize(("content", "option", "message"), [
    ("review,label\nok film,pos\n", "text=body", "Text column 'body' not found"),
    ("text,sentiment\nok film,pos\n", "target=label", "Target column 'label' not found"),
    ("text,label\nok film,pos\n ,neg\n", "", "is empty in data row 2"),
    ("text,label\n", "", "no data rows"),
])
def test_bad_text_csv_raises_data_error(tmp_path, content, option, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        prepare_data(DataSpec(source=f"csv_text:path={path}" + (f",{option}" if option else "")), seed=0)


def test_text_data_refuses_numeric_preprocessing(tmp_path):
    path = write_reviews(tmp_path / "reviews.csv", n=20)
    with pytest.raises(ConfigError, match="token ids"):
        prepare_data(DataSpec(source=f"csv_text:path={path},text=review,target=sentiment", preprocess="standardize"), seed=0)


def test_embedding_bag_is_the_mean_of_non_padding_embeddings_and_auto_picks_it():
    inputs = {"kind": "tokens", "vocabulary_size": 10, "padding_id": 0, "unknown_id": 1, "max_length": 5}
    model = build_model(ModelSpec(hidden=[], norm="none"), (5,), 3, inputs=inputs)
    bag = model.reshape[0]
    x = torch.tensor([[2.0, 3.0, 0.0, 0.0, 0.0], [4.0, 4.0, 5.0, 0.0, 0.0]])
    table = bag.embedding.weight
    expected = torch.stack([table[[2, 3]].mean(0), table[[4, 4, 5]].mean(0)])
    torch.testing.assert_close(bag(x), expected)
    assert model(x).shape == (2, 3)
    conv = build_model(ModelSpec(arch="cnn1d", channels=[8], norm="none"), (5,), 3, inputs=inputs)
    assert conv(x).shape == (2, 3) and conv.reshape[0](x).shape == (2, 64, 5)  # (B, E, L) into the convolutions
    with pytest.raises(ConfigError, match="cannot read token ids"):
        build_model(ModelSpec(arch="mlp"), (5,), 3, inputs=inputs)
    with pytest.raises(ConfigError, match="reads token ids"):
        build_model(ModelSpec(arch="embedding_bag"), (5,), 3)


# --- augmentations ---------------------------------------------------------------------------------

SENTENCES = ["the happy child saw a large dog", "a quick film about the big city", "she will buy a fast car"]


def synonyms_of(word: str, wordnet) -> set[str]:
    """The reference: every lemma name of every WordNet synset of the word."""
    return {lemma.name().lower() for synset in wordnet.synsets(word) for lemma in synset.lemmas()}


@needs_wordnet
def test_wordnet_synonyms_replace_words_only_by_their_synonyms():
    wordnet = load_wordnet()
    words = {w for s in SENTENCES for w in tokenize(s)}
    extra = {lemma.name().lower() for w in words for synset in wordnet.synsets(w) for lemma in synset.lemmas()}
    encoding = TextEncoding((("<pad>", "<unk>", *sorted(words | {e for e in extra if "_" not in e}))), max_length=8, fitted=True)
    x = encoding.encode(SENTENCES)
    augment = build_augmentation(["synonym:0.9"], (8,), seed=0, inputs=encoding)
    augmentation = augment.augmentation
    params = augmentation.make_params(3, torch.Generator().manual_seed(0))
    params["replace"][:] = True  # every word that has a synonym is replaced
    out = augmentation.apply(x, params)
    assert torch.equal(out, augmentation.apply(x.clone(), params))  # deterministic given params
    changed = 0
    for before, after in zip(encoding.decode(x), encoding.decode(out)):
        for old, new in zip(before.split(), after.split()):
            if old != new:
                changed += 1
                assert new in synonyms_of(old, wordnet), (old, new)
    assert changed >= 8  # happy, child, saw, large, dog, quick, film, big, city, buy, fast, car have synonyms
    kept = [w for w in encoding.decode(x)[0].split() if not synonyms_of(w, wordnet) - {w}]
    assert all(w in encoding.decode(out)[0].split() for w in kept)  # words without synonyms stay


def test_synonym_file_is_used_and_only_in_vocabulary_synonyms_are_chosen(tmp_path):
    path = tmp_path / "synonyms.tsv"
    path.write_text("# word<TAB>synonyms\ngood\tfine,superb,splendid\nbad\tpoor\n")
    assert read_synonym_file(path)["good"] == ["fine", "superb", "splendid"]
    encoding = TextEncoding(("<pad>", "<unk>", "bad", "fine", "film", "good", "poor", "superb"), max_length=4, fitted=True)
    x = encoding.encode(["good film", "bad film"]).repeat(50, 1)
    augment = build_augmentation([f"synonym:0.5,synonyms={path}"], (4,), seed=0, inputs=encoding)
    words = [text.split() for text in encoding.decode(augment(x, torch.zeros(100))[0])]
    firsts = {w[0] for w in words}
    assert firsts == {"good", "fine", "superb", "bad", "poor"}  # splendid is not in the vocabulary
    assert all(w[1] == "film" for w in words)  # film has no synonym
    (tmp_path / "bad.tsv").write_text("good fine\n")
    with pytest.raises(DataError, match="Line 1 .* has no tab"):
        build_augmentation([f"synonym:0.5,synonyms={tmp_path / 'bad.tsv'}"], (4,), inputs=encoding)


def test_delete_and_swap_are_deterministic_given_params():
    encoding = TextEncoding(("<pad>", "<unk>", "a", "b", "c", "d"), max_length=5, fitted=True)
    x = encoding.encode(["a b c d", "c d"])
    delete = build_augmentation(["delete:0.5"], (5,), inputs=encoding).augmentation
    drop = torch.tensor([[False, True, False, True, False], [True, True, False, False, False]])
    assert encoding.decode(delete.apply(x, {"drop": drop})) == ["a c", "c"]  # moved left; a text keeps one word
    swap = build_augmentation(["swap:2"], (5,), inputs=encoding).augmentation
    pairs = torch.tensor([[[0.0, 0.99], [0.3, 0.6]], [[0.0, 0.6], [0.0, 0.0]]])  # positions: (0, 3), (1, 2); (0, 1), (0, 0)
    assert encoding.decode(swap.apply(x, {"pairs": pairs})) == ["d c b a", "d c"]
    for augmentation in (delete, swap):
        params = augmentation.make_params(2, torch.Generator().manual_seed(3))
        assert torch.equal(augmentation.apply(x, params), augmentation.apply(x.clone(), params))
        assert all(len(value) == 2 for value in params.values())


def test_text_augmenter_leaves_labels_alone_and_refuses_other_data():
    encoding = TextEncoding(("<pad>", "<unk>", "a", "b", "c"), max_length=3, fitted=True)
    x, y = encoding.encode(["a b c", "c b a"]), torch.tensor([0, 1])
    out, labels = build_augmentation(["swap:3", "delete:0.3"], (3,), seed=1, inputs=encoding)(x, y)
    assert labels is y and out.shape == x.shape
    with pytest.raises(ConfigError, match="Augmentations for it: delete, swap, synonym"):
        build_augmentation(["noise:0.1"], (3,), inputs=encoding)
    with pytest.raises(ConfigError, match="is for text"):
        build_augmentation(["swap"], (3,))


def test_missing_nltk_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "nltk", None)  # import nltk now raises ImportError
    with pytest.raises(ConfigError, match=r"pip install 'deepwell\[text\]'"):
        load_wordnet.__wrapped__("/usr/share/wordnet")


def test_missing_wordnet_database_names_the_package_and_the_file_option(tmp_path):
    with pytest.raises(ConfigError, match=r"apt-get install wordnet-base.*synonyms=PATH"):
        load_wordnet.__wrapped__(str(tmp_path))


# --- end to end ------------------------------------------------------------------------------------


def test_train_text_csv_end_to_end_with_augmentation(train_recording, tmp_path):
    from deepwell.run import Run

    path = write_reviews(tmp_path / "reviews.csv", n=200)
    synonym = "synonym:0.2" if (WORDNET / "index.noun").is_file() else "swap:1"
    code, err, seen = train_recording(
        "--set", f"data.source=csv_text:path={path},text=review,target=sentiment,max_length=12",
        "--set", f"data.augment=[{synonym}, delete:0.1, swap:1]", "--set", "train.epochs=6",
        "--set", f"output.dir={tmp_path}", "--set", "output.name=text", "--set", "output.report=false")
    assert code == 0, err
    run = Run.load(tmp_path / "text")
    assert run.spec.model.arch == "embedding_bag" and run.meta["inputs"]["kind"] == "tokens"
    assert run.summary["test"]["test/acc"] >= 0.9
    assert run.predict(["What a wonderful, superb film", "awful acting and a terrible plot"]).tolist() == [1, 0]  # pos, neg
    assert run.encoding.fitted and run.encoding.max_length == 12
    x_val, batches = seen[0], torch.cat(seen[1:])
    train_rows = {tuple(row.tolist()) for row in batches}
    assert not any(tuple(row.tolist()) in train_rows for row in x_val)  # no validation text reached the augmenter
