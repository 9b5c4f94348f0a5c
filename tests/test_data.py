"""Tests of deepwell.data: sources against their references, validation errors, splits, noise, preprocessing."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from deepwell.config import DataSpec
from deepwell.data import (
    DATASETS,
    PREPROCESSORS,
    Dataset,
    add_label_noise,
    build_dataset,
    load_array_file,
    prepare_data,
    split_validation,
    subset,
    validate_dataset,
)
from deepwell.errors import CheckpointError, ConfigError, DataError

FILE_SOURCES = {"csv", "npz", "images", "csv_text", "wav"}


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def tiny_dataset(**changes) -> Dataset:
    values = dict(
        name="tiny",
        x_train=torch.zeros(6, 2),
        y_train=torch.tensor([0, 1, 2, 0, 1, 2]),
        x_test=torch.zeros(3, 2),
        y_test=torch.tensor([0, 1, 2]),
        task="classification",
        num_classes=3,
    )
    values.update(changes)
    return Dataset(**values)


# ----- built-in sources -------------------------------------------------------------------------


def test_mnist1d_default_is_the_standard_split():
    dataset = build_dataset("mnist1d", seed=0)
    assert dataset.x_train.shape == (4000, 1, 40) and dataset.x_test.shape == (1000, 1, 40)
    assert dataset.x_train.dtype == torch.float32 and dataset.y_train.dtype == torch.int64
    assert sorted(dataset.y_train.unique().tolist()) == list(range(10))
    assert dataset.num_classes == 10 and dataset.input_shape == (1, 40)


def test_mnist1d_cache_gives_the_generated_arrays_and_survives_damage(tmp_path, monkeypatch):
    from deepwell.data import mnist1d as sources

    monkeypatch.setenv("DEEPWELL_CACHE", str(tmp_path))
    args = (120, 0.5, False, 1.0, 3)
    fresh = sources.generate_mnist1d(*args)
    sources.mnist1d_arrays.cache_clear()
    first = sources.mnist1d_arrays(*args)           # generated, then written
    files = list(tmp_path.glob("mnist1d-*.npz"))
    assert len(files) == 1 and not list(tmp_path.glob(".*tmp"))
    sources.mnist1d_arrays.cache_clear()
    monkeypatch.setattr(sources, "generate_mnist1d", lambda *a: pytest.fail("read from the cache, not generated"))
    cached = sources.mnist1d_arrays(*args)          # read back
    for a, b, c in zip(fresh, first, cached):
        assert np.array_equal(a, b) and np.array_equal(a, c) and not c.flags.writeable
    files[0].write_bytes(b"not an npz")              # a damaged file: generated again
    monkeypatch.undo()
    monkeypatch.setenv("DEEPWELL_CACHE", str(tmp_path))
    sources.mnist1d_arrays.cache_clear()
    assert all(np.array_equal(a, b) for a, b in zip(fresh, sources.mnist1d_arrays(*args)))
    monkeypatch.setenv("DEEPWELL_CACHE", "off")
    assert sources.cache_dir() is None
    sources.mnist1d_arrays.cache_clear()


@pytest.mark.parametrize("noise", [1.0, 0.5])
def test_mnist1d_equals_the_reference_generator(noise):
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples = 300
    args.corr_noise_scale *= noise
    args.iid_noise_scale *= noise
    reference = make_dataset(args)
    np.random.seed(123)
    random.seed(123)
    expected_numpy, expected_python = np.random.rand(), random.random()
    np.random.seed(123)
    random.seed(123)
    dataset = build_dataset(f"mnist1d:num_samples=300,noise={noise}", seed=7)
    # Building data must not reseed the global generators (mnist1d's set_seed would).
    assert (np.random.rand(), random.random()) == (expected_numpy, expected_python)
    torch.testing.assert_close(dataset.x_train[:, 0], torch.tensor(reference["x"], dtype=torch.float32))
    torch.testing.assert_close(dataset.x_test[:, 0], torch.tensor(reference["x_test"], dtype=torch.float32))
    assert torch.equal(dataset.y_train, torch.tensor(reference["y"])) and torch.equal(dataset.y_test, torch.tensor(reference["y_test"]))


@pytest.mark.parametrize("name", sorted(set(DATASETS.names()) - FILE_SOURCES - {"mnist1d"}))
def test_every_built_in_source_builds_valid_data(name):
    dataset = build_dataset(name, seed=0)
    assert validate_dataset(dataset) is dataset
    assert len(dataset.x_train) > 0 and len(dataset.x_test) > 0
    if dataset.task == "classification":
        assert dataset.num_classes >= 2 and len(dataset.class_names) == dataset.num_classes
    else:
        assert dataset.y_train.ndim == 2 and dataset.num_classes == 0
    again = build_dataset(name, seed=0)
    assert torch.equal(dataset.x_train, again.x_train)  # seeded, deterministic


def test_digits_are_scaled_images_of_sklearn_digits():
    from sklearn.datasets import load_digits

    dataset = build_dataset("digits", seed=0)
    assert dataset.input_shape == (1, 8, 8) and float(dataset.x_train.max()) == 1.0
    reference = torch.tensor(load_digits().images / 16.0, dtype=torch.float32)
    assert len(dataset.x_train) + len(dataset.x_test) == len(reference)
    # Every training image is one of the reference images (the split only reorders and partitions).
    assert torch.cdist(dataset.x_train[:20].flatten(1), reference.flatten(1)).min(dim=1).values.max() == 0


def test_tabular_split_is_stratified_and_named():
    dataset = build_dataset("iris:test_fraction=0.2", seed=3)
    assert torch.bincount(dataset.y_test).tolist() == [10, 10, 10]
    assert dataset.feature_names[0] == "sepal length (cm)" and dataset.class_names == ["setosa", "versicolor", "virginica"]


def test_polynomial_noise_sets_the_best_test_error():
    dataset = build_dataset("polynomial:n=20,degree=3,noise=0.1,n_test=4000", seed=0)
    assert dataset.x_train.shape == (20, 1) and dataset.y_test.shape == (4000, 1)
    assert float(dataset.x_train.abs().max()) <= 1.0
    # Refit the noiseless truth from the noisy test set: the residual variance must be noise**2.
    basis = np.polynomial.legendre.legvander(dataset.x_test[:, 0].double().numpy(), 3)
    target = dataset.y_test[:, 0].double().numpy()
    residual = target - basis @ np.linalg.lstsq(basis, target, rcond=None)[0]
    assert abs(residual.var() - 0.01) < 0.002


def test_unknown_source_and_bad_parameter_raise_config_error():
    with pytest.raises(ConfigError, match="Did you mean 'moons'"):
        build_dataset("mons", seed=0)
    with pytest.raises(ConfigError, match="test_fraction"):
        build_dataset("iris:test_fraction=1.5", seed=0)
    assert str(DATASETS.parse("csv:path=a.csv,target=y")) == "csv:a.csv,target=y"


# ----- validation --------------------------------------------------------------------------------


def test_validation_reports_nan_count_and_first_row():
    x = torch.zeros(20, 2)
    x[17, 0] = x[18, 1] = x[19, 0] = float("nan")
    dataset = tiny_dataset(x_train=x, y_train=torch.zeros(20, dtype=torch.int64))
    with pytest.raises(DataError, match=r"x_train has 3 NaN values \(first at row 17\); clean or impute"):
        validate_dataset(dataset)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"y_train": torch.tensor([0, 1, 5, 0, 1, 2])}, r"out of range \(first at row 2: 5\).*0\.\.2"),
        ({"y_test": torch.tensor([0, -1, 2])}, "y_test has 1 label.* out of range"),
        ({"y_train": torch.tensor([0, 1, 2])}, "x_train has 6 examples but y_train has 3"),
        ({"x_train": torch.zeros(0, 2), "y_train": torch.zeros(0, dtype=torch.int64)}, "train split .* is empty"),
        ({"x_test": torch.full((3, 2), float("inf"))}, "x_test has 6 infinite values"),
        ({"x_test": torch.zeros(3, 4)}, r"shape \(2,\) but test examples \(4,\)"),
        ({"y_train": torch.zeros(6)}, "int64"),
        ({"task": "regression", "num_classes": 0, "y_train": torch.zeros(6, 1), "y_test": torch.tensor([[0.0], [float("nan")], [1.0]])},
         "y_test has 1 NaN value"),
    ],
)
def test_validation_rejects_bad_data(changes, message):
    with pytest.raises(DataError, match=message):
        validate_dataset(tiny_dataset(**changes))


# ----- splits and label noise -------------------------------------------------------------------


def test_split_validation_is_exact_stratified_and_a_partition():
    x = torch.arange(100.0).unsqueeze(1)
    y = torch.tensor([0] * 50 + [1] * 30 + [2] * 20)
    x_train, y_train, x_val, y_val = split_validation(x, y, 0.1, generator(1))
    assert len(x_val) == 10 and torch.bincount(y_val).tolist() == [5, 3, 2]
    assert sorted(torch.cat([x_train, x_val])[:, 0].tolist()) == x[:, 0].tolist()
    again = split_validation(x, y, 0.1, generator(1))[2]
    assert torch.equal(x_val, again)
    assert len(split_validation(x, y, 0.0, generator(1))[2]) == 0


def test_subset_draws_n_distinct_examples():
    x = torch.arange(50.0).unsqueeze(1)
    x_small, y_small = subset(x, x[:, 0].long(), 7, generator(2))
    assert len(x_small) == 7 and len(x_small.unique()) == 7 and torch.equal(x_small[:, 0].long(), y_small)
    with pytest.raises(DataError, match="Cannot keep 51 training examples: 50 are available"):
        subset(x, x[:, 0].long(), 51, generator(2))


def test_incorrect_label_noise_changes_exactly_the_chosen_labels():
    y = torch.randint(0, 4, (1001,), generator=generator(0))
    noisy, chosen = add_label_noise(y, 0.15, 4, "incorrect", generator(5))
    assert int(chosen.sum()) == round(0.15 * 1001) == 150
    assert bool((noisy[chosen] != y[chosen]).all()) and torch.equal(noisy[~chosen], y[~chosen])
    again, _ = add_label_noise(y, 0.15, 4, "incorrect", generator(5))
    assert torch.equal(noisy, again)
    # Every wrong label is equally likely: offsets 1..K-1 each about a third of 20000.
    many = torch.zeros(20000, dtype=torch.int64)
    flipped, _ = add_label_noise(many, 1.0, 4, "incorrect", generator(6))
    shares = torch.bincount(flipped, minlength=4).double() / len(many)
    assert shares[0] == 0 and torch.allclose(shares[1:], torch.full((3,), 1 / 3, dtype=torch.float64), atol=0.015)


def test_uniform_label_noise_changes_about_one_minus_one_over_k_of_chosen():
    y = torch.randint(0, 4, (20000,), generator=generator(0))
    noisy, chosen = add_label_noise(y, 0.5, 4, "uniform", generator(1))
    assert int(chosen.sum()) == 10000 and torch.equal(noisy[~chosen], y[~chosen])
    changed_share = float((noisy[chosen] != y[chosen]).double().mean())
    assert abs(changed_share - 0.75) < 0.015


def test_prepare_data_touches_only_training_labels():
    clean = prepare_data(DataSpec(source="spirals:n=600", val_fraction=0.2), seed=4)
    noisy = prepare_data(DataSpec(source="spirals:n=600", val_fraction=0.2, label_noise=0.25), seed=4)
    assert torch.equal(clean.x_train, noisy.x_train) and torch.equal(clean.y_val, noisy.y_val) and torch.equal(clean.y_test, noisy.y_test)
    assert int(noisy.noisy_mask.sum()) == round(0.25 * len(clean.y_train)) and clean.noisy_mask is None
    assert torch.equal(noisy.y_train != clean.y_train, noisy.noisy_mask)


def test_prepare_data_splits_subsets_and_is_seeded():
    spec = DataSpec(source="moons:n=500", val_fraction=0.1, n_train=100, preprocess="standardize")
    first, again, other = prepare_data(spec, seed=0), prepare_data(spec, seed=0), prepare_data(spec, seed=1)
    assert first.x_train.shape == (100, 2) and first.x_val.shape == (40, 2) and first.x_test.shape == (100, 2)
    assert torch.equal(first.x_train, again.x_train) and not torch.equal(first.x_val, other.x_val)
    assert first.input_shape == first.raw_input_shape == (2,) and first.output_size == 2
    no_val = prepare_data(DataSpec(source="moons:n=100", val_fraction=0.0), seed=0)
    assert no_val.x_val is None and no_val.y_val is None and len(no_val.x_train) == 80


def test_label_noise_on_regression_is_a_config_error():
    with pytest.raises(ConfigError, match="regression"):
        prepare_data(DataSpec(source="polynomial", label_noise=0.1, val_fraction=0.0), seed=0)


# ----- preprocessing -----------------------------------------------------------------------------


def correlated(n: int, seed: int, shift: float = 0.0) -> torch.Tensor:
    mixing = torch.tensor([[2.0, 0.5, 0.0, 0.1], [0.0, 1.0, 0.3, 0.0], [0.0, 0.0, 0.5, 0.2], [0.3, 0.0, 0.0, 0.1]])
    return torch.randn(n, 4, generator=generator(seed)) @ mixing + 3.0 + shift  # (N, 4), correlated features


def covariance(x: torch.Tensor) -> torch.Tensor:
    centred = x.flatten(1).double() - x.flatten(1).double().mean(dim=0)
    return centred.T @ centred / len(x)


def test_standardize_is_fitted_on_train_only():
    x_train, x_test = correlated(500, 0), correlated(500, 1, shift=2.0)
    preprocessor = PREPROCESSORS.build("standardize").fit(x_train)
    train, test = preprocessor(x_train), preprocessor(x_test)
    torch.testing.assert_close(train.mean(dim=0), torch.zeros(4), atol=1e-5, rtol=0)
    torch.testing.assert_close(train.std(dim=0, unbiased=False), torch.ones(4), atol=1e-5, rtol=0)
    torch.testing.assert_close(test, (x_test - x_train.mean(0)) / x_train.std(0, unbiased=False))
    assert float(test.mean(dim=0).abs().min()) > 0.5  # test statistics were not used


def test_standardize_keeps_constant_features_finite():
    x = torch.cat([torch.randn(50, 1, generator=generator(0)), torch.zeros(50, 1)], dim=1)
    out = PREPROCESSORS.build("standardize").fit(x)(torch.tensor([[0.0, 1.0]]))
    assert float(out[0, 1]) == 1.0


def test_whitening_gives_identity_covariance_and_zca_stays_closest():
    x = correlated(3000, 0)
    # A tiny eps so the smallest-variance direction is not visibly shrunk by lambda / (lambda + eps).
    zca = PREPROCESSORS.build("zca_whiten:eps=1e-10").fit(x)(x)
    pca = PREPROCESSORS.build("pca_whiten:eps=1e-10").fit(x)(x)
    for whitened in (zca, pca):
        torch.testing.assert_close(covariance(whitened), torch.eye(4, dtype=torch.float64), atol=1e-3, rtol=0)
    centred = x - x.mean(dim=0)
    assert float((zca - centred).norm()) < float((pca - centred).norm())


def test_pca_whiten_components_match_sklearn():
    from sklearn.decomposition import PCA

    x = correlated(1000, 2)
    preprocessor = PREPROCESSORS.build("pca_whiten:components=2,eps=1e-12").fit(x)
    ours = preprocessor(x)
    assert ours.shape == (1000, 2) and preprocessor.output_shape((4,)) == (2,)
    reference = PCA(n_components=2, whiten=True).fit_transform(x.double().numpy())
    # scikit-learn divides variance by N-1, we by N; eigenvector signs are arbitrary.
    expected = torch.tensor(np.abs(reference) * np.sqrt(1000 / 999), dtype=torch.float32)
    torch.testing.assert_close(ours.abs(), expected, atol=1e-3, rtol=1e-3)


def test_per_channel_mean_subtracts_one_mean_per_channel():
    x = torch.randn(10, 3, 4, 4, generator=generator(0)) + torch.tensor([1.0, 2.0, 3.0]).view(1, 3, 1, 1)
    out = PREPROCESSORS.build("per_channel_mean").fit(x)(x)
    torch.testing.assert_close(out, x - x.mean(dim=(0, 2, 3), keepdim=True))


@pytest.mark.parametrize("option", sorted(PREPROCESSORS.names()) + ["mean_image", "pca_whiten:components=3"])
def test_preprocessing_state_round_trips_into_a_fresh_instance(option):
    x = torch.randn(40, 1, 2, 3, generator=generator(0)) * 2 + 1
    fitted = PREPROCESSORS.build(option).fit(x)
    fresh = PREPROCESSORS.build(option)
    fresh.load_state_tensors(fitted.state_tensors())
    new = torch.randn(5, 1, 2, 3, generator=generator(1))
    assert torch.equal(fitted(new), fresh(new))
    assert tuple(fitted(new).shape[1:]) == fitted.output_shape((1, 2, 3))


def test_preprocessing_misuse_raises_clear_errors():
    with pytest.raises(DataError, match="not fitted; call .fit"):
        PREPROCESSORS.build("zca_whiten")(torch.zeros(3, 2))
    with pytest.raises(CheckpointError, match="missing \\['scale'\\]"):
        PREPROCESSORS.build("standardize").load_state_tensors({"mean": torch.zeros(2)})
    with pytest.raises(DataError, match=r"fitted on examples of shape \(2,\); got \(3,\)"):
        PREPROCESSORS.build("center").fit(torch.randn(4, 2))(torch.zeros(1, 3))
    with pytest.raises(ConfigError, match="components=9 exceeds the 2 input features"):
        PREPROCESSORS.build("pca_whiten:components=9").fit(torch.randn(4, 2))


# ----- user files --------------------------------------------------------------------------------


def write(path, text: str):
    path.write_text(text)
    return path


def test_csv_with_text_classes(tmp_path):
    rows = "\n".join(f"{i},{i % 3 * 10 + 0.5},{['setosa', 'virginica', 'versicolor'][i % 3]}" for i in range(30))
    path = write(tmp_path / "flowers.csv", "width,length,species\n" + rows + "\n")
    dataset = build_dataset(f"csv:path={path},target=species,test_fraction=0.2", seed=0)
    assert dataset.name == "flowers" and dataset.task == "classification" and dataset.num_classes == 3
    assert dataset.class_names == ["setosa", "versicolor", "virginica"] and dataset.feature_names == ["width", "length"]
    assert dataset.x_train.shape == (24, 2) and dataset.x_test.shape == (6, 2)
    # Class 'virginica' (index 2) was written for rows with i % 3 == 1, length 10.5.
    assert bool((dataset.x_train[dataset.y_train == 2, 1] == 10.5).all())


def test_csv_numeric_targets_pick_the_task(tmp_path):
    values = "\n".join(f"{i},{i * 0.37:.2f},{i % 2}" for i in range(40))
    path = write(tmp_path / "table.csv", "a,price,label\n" + values + "\n")
    regression = build_dataset(f"csv:path={path},target=price", seed=0)
    assert regression.task == "regression" and regression.y_train.shape == (32, 1) and regression.feature_names == ["a", "label"]
    classification = build_dataset(f"csv:path={path},target=label", seed=0)
    assert classification.task == "classification" and classification.num_classes == 2
    assert build_dataset(f"csv:path={path},target=label,task=regression", seed=0).task == "regression"


@pytest.mark.parametrize(
    "text, option, message",
    [
        ("a,b,target\n1,2,0\nnan,3,1\n4,5,0\n6,7,1\n8,9,0\n", "", r"1 missing \(blank or NaN\) cell in column\(s\) a \(1\); the first is on line 3"),
        ("a,b,target\n1,x,0\n2,y,1\n", "", "Column 'b' .* is not numeric \\(row 1: 'x'\\)"),
        ("a,b,label\n1,2,0\n", "", "Target column 'target' not found.*Columns: a, b, label"),
        ("a,b,labels\n1,2,0\n", ",target=label", "Did you mean 'labels'"),
        ("a,b,target\n", "", "no data rows"),
        ("a,b,target\n1,2\n3,4,5\n", "", "rows of different lengths"),
        ("a,target\n1,cat\n2,dog\n", ",task=regression", "text targets"),
    ],
)
def test_bad_csv_raises_data_error(tmp_path, text, option, message):
    path = write(tmp_path / "bad.csv", text)
    with pytest.raises(DataError, match=message):
        build_dataset(f"csv:path={path}{option}", seed=0)


def test_missing_file_says_what_to_give(tmp_path):
    with pytest.raises(DataError, match=r"File '.*x\.csv' not found\. Give the path of an existing CSV file\."):
        build_dataset(f"csv:path={tmp_path / 'x.csv'}", seed=0)
    with pytest.raises(DataError, match="not found"):
        build_dataset(f"npz:path={tmp_path / 'x.npz'}", seed=0)
    with pytest.raises(DataError, match="Image folder .* not found"):
        build_dataset(f"images:path={tmp_path / 'nothing'}", seed=0)


def test_npz_with_and_without_test_split(tmp_path):
    x, y = np.random.default_rng(0).normal(size=(50, 3, 2)), np.arange(50) % 5
    np.savez(tmp_path / "data.npz", x=x, y=y)
    dataset = build_dataset(f"npz:path={tmp_path / 'data.npz'}", seed=0)
    assert dataset.x_train.shape == (40, 3, 2) and dataset.num_classes == 5 and dataset.task == "classification"
    np.savez(tmp_path / "split.npz", x=x, y=y * 0.5, x_test=x[:7], y_test=y[:7] * 0.5)
    split = build_dataset(f"npz:path={tmp_path / 'split.npz'}", seed=0)
    assert split.task == "regression" and len(split.x_train) == 50 and torch.equal(split.y_test[:, 0], torch.tensor(y[:7] * 0.5, dtype=torch.float32))


def test_bad_npz_raises_data_error(tmp_path):
    np.savez(tmp_path / "nokeys.npz", inputs=np.zeros((3, 2)))
    with pytest.raises(DataError, match="no key\\(s\\) 'x', 'y'; found \\['inputs'\\]"):
        build_dataset(f"npz:path={tmp_path / 'nokeys.npz'}", seed=0)
    np.savez(tmp_path / "objects.npz", x=np.array([{"a": 1}, None], dtype=object), y=np.zeros(2))
    with pytest.raises(DataError, match="without unpickling"):
        build_dataset(f"npz:path={tmp_path / 'objects.npz'}", seed=0)
    np.savez(tmp_path / "empty.npz", x=np.zeros((0, 2)), y=np.zeros(0), x_test=np.zeros((1, 2)), y_test=np.zeros(1))
    with pytest.raises(DataError, match="train split .* is empty"):
        build_dataset(f"npz:path={tmp_path / 'empty.npz'}", seed=0)
    write(tmp_path / "text.npz", "not numpy")
    with pytest.raises(DataError, match="is not an .npz archive"):
        build_dataset(f"npz:path={tmp_path / 'text.npz'}", seed=0)


def test_image_folder_reads_resizes_and_labels(tmp_path):
    from PIL import Image

    colours = {"blue": (0, 0, 255), "red": (255, 0, 0)}
    for name, colour in colours.items():
        (tmp_path / name).mkdir()
        for index in range(3):
            Image.new("RGB", (12, 10), colour).save(tmp_path / name / f"{index}.png")
    dataset = build_dataset(f"images:path={tmp_path},size=8,test_fraction=0.34", seed=0)
    assert dataset.class_names == ["blue", "red"] and dataset.x_train.shape == (4, 3, 8, 8) and len(dataset.x_test) == 2
    images, labels = torch.cat([dataset.x_train, dataset.x_test]), torch.cat([dataset.y_train, dataset.y_test])
    assert torch.equal(images[labels == 1][:, 0], torch.ones(3, 8, 8)) and float(images[labels == 1][:, 2].max()) == 0.0
    gray = build_dataset(f"images:path={tmp_path},size=4,grayscale=true,test_fraction=0.34", seed=0)
    assert gray.input_shape == (1, 4, 4)
    write(tmp_path / "red" / "broken.png", "not an image")
    with pytest.raises(DataError, match="Cannot read image .*broken.png"):
        build_dataset(f"images:path={tmp_path}", seed=0)
    (tmp_path / "red" / "broken.png").unlink()
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="has no images"):
        build_dataset(f"images:path={tmp_path}", seed=0)


# ----- prediction inputs -------------------------------------------------------------------------


def test_load_array_file_reads_csv_and_npz(tmp_path):
    expected = torch.tensor([[1.0, 2.0], [3.0, 4.5]])
    with_header = write(tmp_path / "a.csv", "u,v\n1,2\n3,4.5\n")
    without_header = write(tmp_path / "b.csv", "1,2\n3,4.5\n")
    np.savez(tmp_path / "c.npz", x=expected.numpy().astype(np.float64))
    for path in (with_header, without_header, tmp_path / "c.npz"):
        loaded = load_array_file(path)
        assert loaded.dtype == torch.float32 and torch.equal(loaded, expected)
    with pytest.raises(DataError, match="non-numeric cell in data row 2"):
        load_array_file(write(tmp_path / "d.csv", "u,v\n1,2\n3,oops\n"))
    with pytest.raises(DataError, match="expected a .csv, .npz"):
        load_array_file(write(tmp_path / "e.txt", "1,2\n"))
    np.savez(tmp_path / "f.npz", inputs=np.zeros((2, 2)))
    with pytest.raises(DataError, match="no key 'x'"):
        load_array_file(tmp_path / "f.npz")
