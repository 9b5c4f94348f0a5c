"""Transfer learning: backbones from runs and local torchvision weights, freezing, BatchNorm policy, discriminative lrs."""

from __future__ import annotations


import pytest
import torch
from safetensors.torch import load_file

import deepwell
from deepwell.config import ModelSpec, TrainSpec
from deepwell.errors import ConfigError
from deepwell.models.transfer import TransferModel, build_network
from deepwell.training.loop import TensorData, fit
from killing import Kill

pytestmark = pytest.mark.usefixtures("single_thread")

SOURCE = ["output.report=false", "data.source=moons:n=300", "model.hidden=[16,16]", "train.epochs=3",
          "train.batch_size=32", "train.lr=0.01", "diagnostics.probes=false"]


@pytest.fixture(scope="module")
def source_run(tmp_path_factory) -> deepwell.Run:
    """A tiny trained MLP with batchnorm: the backbone of the tests below."""
    folder = tmp_path_factory.mktemp("source")
    return deepwell.train(overrides=[*SOURCE, f"output.dir={folder}", "output.name=src"], progress="none")


def _transfer(run: deepwell.Run, **fields) -> TransferModel:
    spec = ModelSpec(backbone=f"run:{run.path}", **fields)
    return build_network(spec, run.meta["input_shape"], 3, generator=torch.Generator().manual_seed(0))


def _train_steps(model: torch.nn.Module, epochs: int = 2, lr: float = 0.05) -> None:
    x = torch.randn(96, 2, generator=torch.Generator().manual_seed(1))
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
    fit(model, TensorData(x, y), TrainSpec(epochs=epochs, batch_size=32, lr=lr, schedule="constant", clean_train_examples=32))


def _backbone_state(model: TransferModel) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.backbone.state_dict().items()}


def test_run_backbone_carries_the_trained_weights(source_run):
    model = _transfer(source_run)
    saved = load_file(str(source_run.path / "model.safetensors"))
    backbone = model.backbone.state_dict()
    expected = {k.removeprefix("model.") for k in saved if k.startswith("model.") and not k.startswith("model.head.")}
    assert set(backbone) == expected
    for key, value in backbone.items():
        assert torch.equal(value, saved[f"model.{key}"]), key
    assert model.head.out_features == 3


def test_head_only_keeps_backbone_and_bn_statistics_bit_identical_while_head_trains(source_run):
    model = _transfer(source_run, freeze="head_only", bn_policy="frozen")
    before, head_before = _backbone_state(model), model.head.weight.detach().clone()
    assert any("running_mean" in k for k in before)  # there is BatchNorm to protect
    _train_steps(model)
    after = model.backbone.state_dict()
    for key, value in before.items():
        assert torch.equal(value, after[key]), key
    assert not torch.equal(head_before, model.head.weight)


def test_bn_policy_train_updates_running_statistics_but_not_frozen_weights(source_run):
    model = _transfer(source_run, freeze="head_only", bn_policy="train")
    before = _backbone_state(model)
    _train_steps(model)
    after = model.backbone.state_dict()
    assert not torch.equal(before["dense.0.norm.running_mean"], after["dense.0.norm.running_mean"])
    assert torch.equal(before["dense.0.norm.weight"], after["dense.0.norm.weight"])
    assert torch.equal(before["dense.0.transform.weight"], after["dense.0.transform.weight"])


def test_first_n_freezes_only_the_first_blocks(source_run):
    model = _transfer(source_run, freeze="first:1")
    before = _backbone_state(model)
    _train_steps(model)
    after = model.backbone.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("dense.0."))
    assert not torch.equal(before["dense.1.transform.weight"], after["dense.1.transform.weight"])
    summary = model.parameter_summary()
    assert summary["backbone.dense"]["frozen"] > 0 and summary["backbone.dense"]["trainable"] > 0
    assert summary["head"] == {"trainable": 16 * 3 + 3, "frozen": 0}


def test_pattern_freezes_matching_parameters_and_bad_policies_raise(source_run):
    model = _transfer(source_run, freeze=r"pattern:dense\.1\.")
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen and all(n.startswith("backbone.dense.1.") for n in frozen)
    for bad in ("first:9", "pattern:nomatch", "half"):
        with pytest.raises(ConfigError, match="model.freeze"):
            _transfer(source_run, freeze=bad)


def test_discriminative_learning_rates_reach_the_optimizer(source_run):
    model = _transfer(source_run, lr_mult_backbone=0.1)
    x, y = torch.randn(64, 2), torch.randint(0, 3, (64,))
    captured = {}

    class Capture(deepwell.training.callbacks.Callback):
        def on_fit_start(self, state):
            captured.update({g["name"]: g["lr"] for g in state.optimizer.param_groups})

    fit(model, TensorData(x, y), TrainSpec(epochs=1, batch_size=32, lr=0.02, schedule="constant"), callbacks=[Capture()])
    assert captured == pytest.approx({"backbone": 0.002, "head": 0.02})


def test_torchvision_resnet18_from_a_local_weights_file(tmp_path):
    import torchvision

    reference = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    model = build_network(ModelSpec(backbone=f"torchvision:resnet18,weights={path}", freeze="first:4"), (1, 32, 32), 5)
    x = torch.randn(2, 1, 32, 32)
    reference.fc = torch.nn.Identity()
    model.eval()
    reference.eval()
    with torch.no_grad():
        assert torch.allclose(model.backbone(model.reshape(x)), reference(x.expand(-1, 3, -1, -1)))
        assert model(x).shape == (2, 5)
    assert not model.backbone.conv1.weight.requires_grad and model.backbone.layer4[0].conv1.weight.requires_grad


def test_missing_zoo_weights_name_the_file_and_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(ConfigError, match=r"Put resnet18-f37072fd\.pth in .*hub/checkpoints/ or give weights=PATH"):
        build_network(ModelSpec(backbone="torchvision:resnet18"), (3, 32, 32), 5)
    with pytest.raises(ConfigError, match="nothere.pth' not found"):
        build_network(ModelSpec(backbone=f"torchvision:resnet18,weights={tmp_path / 'nothere.pth'}"), (3, 32, 32), 5)


def test_transfer_run_trains_saves_and_loads_back(source_run, tmp_path):
    transfer = [f"model.backbone=run:{source_run.path}", "model.freeze=head_only", "model.lr_mult_backbone=0.5"]
    run = deepwell.train(overrides=[*SOURCE, f"output.dir={tmp_path}", "output.name=target", *transfer], progress="none")
    assert run.meta["transfer"]["head"]["trainable"] == 16 * 2 + 2
    assert run.meta["transfer"]["backbone.dense"]["trainable"] == 0
    x = torch.randn(5, 2)
    assert torch.equal(run.model(x), deepwell.Run.load(run.path).model(x))
    source_state = source_run.model.state_dict()
    for key, value in run.model.backbone.state_dict().items():
        assert torch.equal(value, source_state[key]), key


@pytest.mark.parametrize("numbers, similar, dissimilar", [
    ({"head_only": 0.72, "fine_tune": 0.77, "scratch": 0.65, "source_acc": 0.98}, "holds", "holds"),
    ({"head_only": 0.60, "fine_tune": 0.77, "scratch": 0.65, "source_acc": 0.98}, "does_not_hold", "holds"),
    ({"head_only": 0.76, "fine_tune": 0.77, "scratch": 0.76, "source_acc": 0.98}, "does_not_hold", "does_not_hold"),
    ({"head_only": 0.72, "fine_tune": 0.77, "scratch": 0.65, "source_acc": 0.30}, "inconclusive", "inconclusive"),
])
def test_transfer_study_verdicts_follow_the_numbers(numbers, similar, dissimilar):
    from deepwell.studies.transfer import dissimilar_verdict, similar_verdict

    assert similar_verdict(numbers).status == similar
    assert dissimilar_verdict(numbers).status == dissimilar


@pytest.mark.slow
def test_transfer_study_quick_mode_writes_verdicts_table_and_figure(tmp_path):
    from deepwell.studies.transfer import run

    output = run(tmp_path, quick=True, seed=0)
    assert [v.claim for v in output.verdicts] == ["transfer-similar", "transfer-dissimilar"]
    assert all(v.status != "inconclusive" for v in output.verdicts)
    assert (tmp_path / "transfer.csv").is_file() and (tmp_path / "transfer.png").is_file()


def test_gradual_unfreezing_opens_blocks_from_the_head_down_on_schedule(source_run):
    from deepwell.training.callbacks import GradualUnfreezing

    model = _transfer(source_run, freeze="head_only", unfreeze="every:2")
    assert [name for name, _ in model.frozen_units] == ["dense.0", "dense.1"]
    snapshots = []

    class Watch(deepwell.training.callbacks.Callback):
        def on_epoch_end(self, state):
            snapshots.append(_backbone_state(model))

    unfreezing = GradualUnfreezing(model, every=2)
    x = torch.randn(96, 2, generator=torch.Generator().manual_seed(1))
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
    before = _backbone_state(model)
    fit(model, TensorData(x, y), TrainSpec(epochs=5, batch_size=32, lr=0.05, schedule="constant"),
        callbacks=[unfreezing, Watch()])
    assert unfreezing.events == [(3, "dense.1"), (5, "dense.0")]

    def same(a, b, prefix):
        return all(torch.equal(a[k], b[k]) for k in a if k.startswith(prefix))

    # epochs 1-2: everything frozen (BatchNorm statistics too); epoch 3 on: dense.1 trains; epoch 5: dense.0.
    assert same(before, snapshots[1], "dense.")
    assert not same(snapshots[1], snapshots[2], "dense.1.") and same(snapshots[1], snapshots[3], "dense.0.")
    assert not torch.equal(snapshots[1]["dense.1.norm.running_mean"], snapshots[2]["dense.1.norm.running_mean"])
    assert not same(snapshots[3], snapshots[4], "dense.0.")
    assert model.frozen_units == [] and model.unfreeze_next() is None


def test_gradual_unfreezing_resumes_where_the_uninterrupted_run_is(source_run, tmp_path):
    common = [f"model.backbone=run:{source_run.path}", "model.freeze=head_only", "model.unfreeze=every:1",
              "data.source=moons:n=200", "train.batch_size=32", "train.epochs=4", "output.report=false",
              "diagnostics.probes=false", f"output.dir={tmp_path}"]
    whole = deepwell.train(overrides=[*common, "output.name=whole"], progress="none")
    assert [e["block"] for e in whole.summary["unfreezing"]] == ["dense.1", "dense.0"]
    assert whole.summary["transfer"]["backbone.dense"]["frozen"] == 0
    with pytest.raises(KeyboardInterrupt):  # killed after epoch 2, between the two unfreezings
        deepwell.train(overrides=[*common, "output.name=cut"], progress="none", callbacks=[Kill(after=2)])
    resumed = deepwell.train(resume=tmp_path / "cut", progress="none")
    assert [e["block"] for e in resumed.summary["unfreezing"]] == ["dense.1", "dense.0"]
    a, b = load_file(str(whole.path / "model.safetensors")), load_file(str(resumed.path / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_unfreeze_needs_a_backbone_and_a_known_schedule(source_run, tmp_path):
    with pytest.raises(ConfigError, match="model.unfreeze"):
        _transfer(source_run, freeze="head_only", unfreeze="gradual")
    with pytest.raises(ConfigError, match="needs a pretrained backbone"):
        deepwell.train(overrides=["data.source=moons:n=100", "model.unfreeze=every:1", "train.epochs=1",
                                  f"output.dir={tmp_path}", "output.report=false"], progress="none")


def test_probes_watch_the_trainable_blocks_of_a_deepwell_backbone(source_run, tmp_path):
    # first:1 freezes dense.0: probes follow dense.1 (trainable) only, so no frozen layer reads as a vanished gradient.
    run = deepwell.train(overrides=[f"model.backbone=run:{source_run.path}", "model.freeze=first:1", "data.source=moons:n=200",
                                    "train.batch_size=32", "train.epochs=2", "diagnostics.every=2", f"output.dir={tmp_path}",
                                    "output.name=probed", "output.report=false"], progress="none")
    from deepwell.diagnostics.probes import load_probes

    log = load_probes(run.path / "probes.jsonl")
    assert log.layers == ["backbone.dense.1"]
    head_only = _transfer(source_run, freeze="head_only")
    from deepwell.diagnostics.probes import probe_blocks

    assert probe_blocks(head_only) == []


def test_transfer_regimes_compare_over_seeds_per_target_size():
    from deepwell.studies.transfer import transfer_regime_verdict

    def rows(source, head, fine, scratch, n):
        out = []
        for strategy, values, origin in (("head_only", head, source), ("fine_tune", fine, source), ("scratch", scratch, "none")):
            out += [{"source": origin, "strategy": strategy, "n_target": n, "seed": s, "test_acc": v} for s, v in enumerate(values)]
        return out

    data = rows("similar", [0.80, 0.81, 0.79], [0.83, 0.84, 0.82], [0.60, 0.62, 0.61], 50) \
        + rows("similar", [0.80, 0.70, 0.90], [0.83, 0.84, 0.82], [0.78, 0.80, 0.79], 200)
    verdict = transfer_regime_verdict(data, "similar", 0.9, [50, 200])
    assert [r.status for r in verdict.regimes] == ["holds", "inconclusive"] and verdict.status == "holds"
    dissimilar = rows("dissimilar", [0.60, 0.61, 0.62], [0.70, 0.71, 0.72], [0.70, 0.72, 0.71], 50)
    v = transfer_regime_verdict(dissimilar, "dissimilar", 0.9, [50])
    assert v.status == "holds" and "fine-tune vs scratch" in v.regimes[0].evidence
    assert transfer_regime_verdict(dissimilar, "dissimilar", 0.3, [50]).status == "inconclusive"  # the source never learned
