"""benchmarks/bench_low_data.py: hyper-parameters are tuned away from the test rows, and the tuned values are applied.

The benchmark itself runs for an hour on real backbones; these tests swap in timm's tiny `test_resnet`.
"""

from pathlib import Path

import fixtures
import pytest
import torch

from hf_transfer import TransferForImageClassification

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_low_data.py"


@pytest.fixture(scope="module")
def bench():
    return fixtures.load_script(SCRIPT, "bench_low_data")


def tiny_model(task, names):
    torch.manual_seed(0)
    return TransferForImageClassification.from_backbones("timm:test_resnet", pretrained=False, num_labels=len(names))


def image_rows(n, num_classes=2, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [{"pixel_values": torch.randn(3, 32, 32, generator=generator), "labels": i % num_classes} for i in range(n)]


def tiny_setting(bench, **kwargs):
    return bench.Setting(epochs={4: 1}, batch_size=4, lr=1e-3, head_lr_multiplier=1, lora_lr=1e-3, lora_r=2, **kwargs)


def test_tuning_split_draws_per_class_and_validation_rows_outside_it(bench):
    pool = [{"labels": i % 3, "i": i} for i in range(300)]
    train, val = bench.tuning_split(pool, shots=5, seed=100, val_size=50, per_class=True)
    assert sorted(r["labels"] for r in train) == [0] * 5 + [1] * 5 + [2] * 5
    assert len(val) == 50 and not {r["i"] for r in train} & {r["i"] for r in val}
    assert [r["i"] for r in bench.tuning_split(pool, 5, 100, 50, True)[1]] == [r["i"] for r in val]  # reproducible
    assert [r["i"] for r in train] != [r["i"] for r in bench.draw(pool, 5, 0, True)]  # not a run's subset


def test_tuned_setting_takes_the_methods_values_at_the_shots_or_the_nearest_below(bench):
    tuned = {
        "shots": {
            "10": {
                "chosen": {
                    "finetune": {"lr": 1e-4, "bn_eval": True},
                    "ema": {"ema_decay": 0.9},
                    "l2sp": {"lr": 3e-4, "l2sp_weight": 1.0},  # tuned jointly: its own lr
                }
            },
            "50": {"chosen": {"finetune": {"lr": 1e-3, "bn_eval": False}, "lora": {"lora_lr": 3e-3}}},
        }
    }
    setting = bench.SETTINGS["image"]
    finetune, shots = bench.tuned_setting(setting, tuned, 10, "finetune")
    assert (shots, finetune.lr, finetune.bn_eval, finetune.l2sp_weight) == (10, 1e-4, True, setting.l2sp_weight)
    l2sp, _ = bench.tuned_setting(setting, tuned, 10, "l2sp")
    assert (l2sp.lr, l2sp.bn_eval, l2sp.l2sp_weight) == (3e-4, True, 1.0)
    both, _ = bench.tuned_setting(setting, tuned, 10, "finetune+ema")
    assert (both.lr, both.ema_decay) == (1e-4, 0.9)
    lora, shots = bench.tuned_setting(setting, tuned, 100, "lora")
    assert (shots, lora.lr, lora.bn_eval, lora.lora_lr) == (50, 1e-3, False, 3e-3)
    with pytest.raises(ValueError, match="no values for shots 5"):
        bench.tuned_setting(setting, tuned, 5, "finetune")


@pytest.mark.parametrize("bn_eval", [False, True])
def test_bn_eval_keeps_the_running_statistics_of_every_method(bench, monkeypatch, bn_eval):
    monkeypatch.setattr(bench, "build_model", tiny_model)
    models = []
    original = bench.TransferTrainer.__init__

    def keep(self, *args, **kwargs):
        original(self, *args, **kwargs)
        models.append(self.model)

    monkeypatch.setattr(bench.TransferTrainer, "__init__", keep)
    before = tiny_model("image", ["a", "b"])
    means = {n: b.clone() for n, b in before.named_buffers() if n.endswith("running_mean")}
    rows = image_rows(8)
    for method in ("finetune", "l2sp", "bss"):
        bench.train_and_score(
            "image",
            method,
            4,
            0,
            rows,
            rows,
            ["a", "b"],
            torch.utils.data.default_collate,
            tiny_setting(bench, bn_eval=bn_eval),
        )
        after = dict(models[-1].named_buffers())
        unchanged = all(torch.equal(after[n], m) for n, m in means.items())
        assert unchanged == bn_eval, method


def test_tune_picks_the_best_validation_score_and_run_one_scores_ema_along_finetune(bench, monkeypatch):
    monkeypatch.setattr(bench, "build_model", tiny_model)
    pool = image_rows(60, seed=1)
    collate = torch.utils.data.default_collate
    grids = {
        "finetune": {"lr": [1e-4, 1e-2], "bn_eval": [False]},
        "ema": {"ema_decay": [0.5, 0.9]},
        "l2sp": {"l2sp_weight": [0.1, 10.0]},
    }
    result = bench.tune("image", 4, pool, ["a", "b"], collate, tiny_setting(bench), grids, tune_seed=100, val_size=20)
    for method in ("finetune", "l2sp"):
        trials = [t for t in result["trials"] if t["method"] == method]
        assert len(trials) == 2
        best = max(trials, key=lambda t: t["val_accuracy"])
        assert result["chosen"][method] == best["params"]
    finetune = next(t for t in result["trials"] if t["params"] == result["chosen"]["finetune"])
    assert result["chosen"]["ema"]["ema_decay"] == max([0.5, 0.9], key=lambda d: finetune["ema_val_accuracy"][str(d)])
    assert {t["params"]["lr"] for t in result["trials"] if t["method"] == "finetune"} == {1e-4, 1e-2}
    assert (result["train_size"], result["val_size"]) == (8, 20)

    setting = bench.replace(tiny_setting(bench), ema_decay=0.9)
    rows = bench.run_one("image", "finetune+ema", 4, 0, pool[:8], pool[8:20], ["a", "b"], collate, setting)
    assert [r["method"] for r in rows] == ["finetune", "ema"] and rows[1]["params"]["ema_decay"] == 0.9
    alone = bench.run_one("image", "finetune", 4, 0, pool[:8], pool[8:20], ["a", "b"], collate, setting)
    assert alone[0]["accuracy"] == rows[0]["accuracy"]  # keeping the EMA does not change the training


def test_epochs_and_co_tuning_are_tuned_and_applied(bench, monkeypatch):
    monkeypatch.setattr(bench, "build_model", tiny_model)
    feature_dim = tiny_model("image", ["a", "b"]).transfer.feature_dim
    monkeypatch.setattr(bench, "source_classifier", lambda name, weights: torch.nn.Linear(feature_dim, 5))
    monkeypatch.setattr(bench.assets, "efficientnet_lite0_weights", lambda: "the ImageNet weights file")
    epochs = []
    original = bench.TransferTrainer.__init__

    def keep(self, *args, **kwargs):
        original(self, *args, **kwargs)
        epochs.append(self.args.num_train_epochs)

    monkeypatch.setattr(bench.TransferTrainer, "__init__", keep)
    pool = image_rows(60, seed=2)
    collate = torch.utils.data.default_collate
    grids = {
        "finetune": {"lr": [1e-3], "bn_eval": [False], "tuned_epochs": [1, 2]},
        "cotune": {"co_tuning_weight": [0.3, 1.0], "tuned_epochs": [1]},
    }
    result = bench.tune("image", 4, pool, ["a", "b"], collate, tiny_setting(bench), grids, tune_seed=100, val_size=20)
    assert sorted(epochs) == [1, 1, 1, 2]
    assert result["chosen"]["cotune"]["tuned_epochs"] == 1
    setting, _ = bench.tuned_setting(tiny_setting(bench), {"shots": {"4": result}}, 4, "cotune")
    assert setting.epochs_at(4) == 1 and setting.co_tuning_weight == result["chosen"]["cotune"]["co_tuning_weight"]
    [row] = bench.run_one("image", "cotune", 4, 0, pool[:8], pool[8:20], ["a", "b"], collate, setting)
    assert row["params"] == {"lr": 1e-3, "bn_eval": False, "epochs": 1, "co_tuning_weight": setting.co_tuning_weight}


def test_co_tuning_is_refused_for_text(bench):
    with pytest.raises(SystemExit):
        bench.main(["--task", "text", "--methods", "cotune", "--seeds", "0"])


def test_tuning_grids_keep_the_methods_run_and_take_overrides(bench):
    grids = bench.tuning_grids(bench.GRIDS["text"], ["probe", "finetune", "lora", "ema"], ["lora.lora_lr=1e-3,1e-2"])
    assert sorted(grids) == ["ema", "finetune", "lora", "lora_targets"]
    assert grids["lora"]["lora_lr"] == [1e-3, 1e-2] and bench.GRIDS["text"]["lora"]["lora_lr"] == [5e-4, 1e-3, 3e-3]
    with pytest.raises(ValueError, match="METHOD.FIELD"):
        bench.tuning_grids(bench.GRIDS["text"], ["finetune"], ["bss.bss_weight=1"])  # BSS is not run
