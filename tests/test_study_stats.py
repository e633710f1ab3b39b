"""Reader-study statistics on published worked examples and constructed extremes."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from napari_mlmi_interp.store import StudyStore
from napari_mlmi_interp.study import analyze_study
from napari_mlmi_interp.study.agreement import alpha, alpha_with_interval, intra_reader, kappa, pairwise_kappa
from napari_mlmi_interp.study.figures import spearman
from napari_mlmi_interp.study.league import league_table

nan = np.nan

#: Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", section C: 4 observers,
#: 12 units, values 1-5, missing data; published alphas: nominal 0.743, ordinal 0.815,
#: interval 0.849, ratio 0.797.
KRIPPENDORFF_2011 = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, nan, nan, nan],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, nan, 3],
    [nan, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, nan],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, nan],
]


def expand(table):
    """Two rating vectors (categories 1..g) from a contingency table (rows: rater A)."""
    a, b = [], []
    for i, row in enumerate(table):
        for j, n in enumerate(row):
            a += [i + 1] * n
            b += [j + 1] * n
    return np.array(a), np.array(b)


#: Altman (1991), Practical Statistics for Medical Research, table 14.2: two radiologists, 85
#: xeromammograms (Boyd et al. 1982); published kappa 0.47, linearly weighted kappa 0.57.
ALTMAN_14_2 = [[21, 12, 0, 0], [4, 17, 1, 0], [3, 9, 15, 2], [0, 0, 0, 1]]
#: Altman (1991), table 14.3: MAST vs RAST on 363 sera, 5 categories; kappa 0.32, weighted 0.56.
ALTMAN_14_3 = [
    [86, 3, 14, 0, 2],
    [26, 0, 10, 4, 0],
    [20, 2, 22, 4, 1],
    [11, 1, 37, 16, 14],
    [3, 0, 15, 24, 48],
]
#: Cohen (1968), Psychological Bulletin 70:213, table 1 (proportions x 200); kappa .492.
COHEN_1968 = [[88, 14, 18], [10, 40, 10], [2, 6, 12]]


def test_alpha_reproduces_krippendorffs_worked_example():
    assert alpha(np.array(KRIPPENDORFF_2011)) == pytest.approx(0.815, abs=0.0005)


@pytest.mark.parametrize(
    ("table", "unweighted", "linear"),
    [(ALTMAN_14_2, 0.47, 0.57), (ALTMAN_14_3, 0.32, 0.56), (COHEN_1968, 0.492, None)],
)
def test_kappa_reproduces_published_tables(table, unweighted, linear):
    a, b = expand(table)
    digits = 3 if unweighted == 0.492 else 2
    assert round(kappa(a, b, weights=None), digits) == unweighted
    if linear is not None:
        assert round(kappa(a, b, weights="linear"), 2) == linear


def test_alpha_extremes():
    rng = np.random.default_rng(3)
    truth = rng.integers(1, 6, 40).astype(float)
    perfect = np.vstack([truth, truth, truth])
    assert alpha(perfect) == pytest.approx(1.0)
    out = alpha_with_interval(perfect, n_boot=200)
    assert out["krippendorff_alpha"] == pytest.approx(1.0) and out["ci95"] == pytest.approx([1.0, 1.0])
    # one reader always says 3: alpha as the library defines it (a number, well below perfect)
    import krippendorff

    one_constant = np.vstack([truth, truth, np.full(40, 3.0)])
    expected = krippendorff.alpha(
        reliability_data=one_constant, level_of_measurement="ordinal", value_domain=[1, 2, 3, 4, 5]
    )
    assert alpha(one_constant) == pytest.approx(expected) and 0 < expected < 0.9
    # everyone always says 3: the library's alpha is 0/0, reported as undefined with the reason
    constant = alpha_with_interval(np.full((3, 10), 3.0), n_boot=50)
    assert constant["krippendorff_alpha"] is None and "every rating is the same" in constant["note"]
    # readers who rate at random agree by chance only
    noise = rng.integers(1, 6, (3, 3000)).astype(float)
    assert abs(alpha(noise)) < 0.03
    # two readers, but never on the same item: nothing to agree on
    apart = np.array([[1, 2, nan, nan], [nan, nan, 3, 4]])
    assert alpha_with_interval(apart)["items"] == 0
    # one reader rated everything, nobody else: one reader, and the note says what is missing
    alone = alpha_with_interval(np.array([[1, 2, 3, 4.0], [nan, nan, nan, nan]]))
    assert alone["readers"] == 1 and "needs two readers" in alone["note"]
    assert alpha_with_interval(np.full((2, 3), nan))["note"] == "no 1-5 rating yet"


def test_resamples_without_variation_are_left_out_and_counted():
    """Mostly 4s: some resamples have every rating equal (alpha 0/0); the interval stays."""
    a = np.full(20, 4.0)
    b = np.full(20, 4.0)
    a[:2], b[:2] = 2.0, 2.0
    b[2] = 3.0
    out = alpha_with_interval(np.vstack([a, b]), n_boot=400, seed=1)
    assert out["krippendorff_alpha"] is not None
    assert "resamples had no variation" in out["note"]
    undefined = int(out["note"].split(" of ")[0])
    assert 0 < undefined <= 0.05 * 400 and out["ci95"] is not None


def test_bootstrap_interval_brackets_alpha_and_repeats_with_its_seed():
    rng = np.random.default_rng(0)
    truth = rng.integers(1, 6, 30)
    m = np.vstack([np.clip(truth + rng.integers(-1, 2, 30), 1, 5) for _ in range(3)]).astype(float)
    m[0, :5] = nan  # a reader skipped some items
    first = alpha_with_interval(m, n_boot=300, seed=7)
    again = alpha_with_interval(m, n_boot=300, seed=7)
    lo, hi = first["ci95"]
    assert lo < first["krippendorff_alpha"] < hi and first == again
    assert (first["readers"], first["items"]) == (3, 30)


def test_pairwise_kappa_uses_the_items_both_rated():
    cur = pd.DataFrame(
        {
            "run": [1, 2, 3, 4, 1, 2, 3, 4, 1, 2],
            "reader": ["a"] * 4 + ["b"] * 4 + ["c"] * 2,
            "rating": [1, 2, 3, 4, 1, 2, 3, 4, 4, nan],
        }
    )
    out = {tuple(k["readers"]): k for k in pairwise_kappa(cur)}
    assert out[("a", "b")]["kappa"] == pytest.approx(1.0) and out[("a", "b")]["n"] == 4
    assert out[("a", "c")]["n"] == 1 and out[("a", "c")]["kappa"] is None  # one item: undefined


def test_intra_reader_counts_rereads_not_quick_corrections():
    hist = pd.DataFrame(
        {
            "run": [1, 1, 2, 2, 3, 3, 4, 4],
            "reader": ["a"] * 8,
            "rating": [2, 2, 4, 5, 3, 1, 5, 5],
            "at": [0, 7200, 0, 7200, 0, 10, 0, 9000],  # run 3 was corrected 10 s later
        }
    )
    out = intra_reader(hist, repeat_gap_s=3600)
    assert out["a"]["n"] == 3 and out["a"]["exact_agreement"] == pytest.approx(2 / 3)
    a, b = np.array([2, 4, 5]), np.array([2, 5, 5])
    assert out["a"]["kappa"] == pytest.approx(kappa(a, b))
    # 2, corrected to 4 five seconds later, then 4 again two hours later: the same rating twice
    corrected = pd.DataFrame({"run": [1, 1, 1], "reader": ["a"] * 3, "rating": [2, 4, 4], "at": [0, 5, 7205]})
    out = intra_reader(corrected, repeat_gap_s=3600)
    assert out["a"]["n"] == 1 and out["a"]["exact_agreement"] == 1.0


def test_spearman_interval_is_fisher_z_with_bonett_wright():
    x = np.array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10.0])
    y = np.array([2, 1, 4, 3, 6, 5, 8, 7, 10, 9.0])
    r = spearman(x, y)
    rho = 1 - 6 * np.sum((x - y) ** 2) / (10 * (100 - 1))  # no ties: the textbook formula
    assert r["spearman_rho"] == pytest.approx(rho) and r["n"] == 10
    se = math.sqrt((1 + rho**2 / 2) / 7)
    assert r["ci95"] == pytest.approx(
        [math.tanh(math.atanh(rho) - 1.96 * se), math.tanh(math.atanh(rho) + 1.96 * se)], abs=1e-4
    )
    assert spearman(x[:2], y[:2])["spearman_rho"] is None  # too few runs
    perfect = spearman(x[:4], x[:4])
    assert perfect["spearman_rho"] == 1.0 and perfect["ci95"] is None and "|rho| = 1" in perfect["note"]
    assert spearman(x, np.ones(10))["spearman_rho"] is None  # a figure that never changes


def test_league_table_means_and_action_shares():
    runs = pd.DataFrame({"model": ["m", "m", "m", "m"], "method": ["a", "a", "b", "b"]}, index=[1, 2, 3, 4])
    cur = pd.DataFrame(
        {
            "run": [1, 1, 2, 2, 3, 3, 4, 4],
            "reader": ["x", "y"] * 4,
            "element": ["localization"] * 8,
            "rating": [5, 4, 5, nan, 2, 1, 2, 3],
        }
    )
    actions = pd.DataFrame(
        {"run": [1, 2, 3, 4], "reader": ["x"] * 4, "action": ["accept", "accept", "refer", "accept"]}
    )
    table = league_table(runs, cur, actions, n_boot=200)
    assert [r["method"] for r in table] == ["a", "b"]  # best first
    a = table[0]["elements"]["localization"]
    assert a["mean"] == pytest.approx(14 / 3) and a["n"] == 3 and a["runs"] == 2
    assert a["ci95"][0] <= a["mean"] <= a["ci95"][1]
    assert table[1]["actions"]["accept"] == 0.5 and table[1]["actions"]["refer"] == 0.5
    # x acted on both runs, y (who rated both, once "not applicable") on none
    assert table[0]["action_recorded"] == pytest.approx(0.5)
    assert table[0]["elements"]["actionability"]["mean"] is None


def test_analyze_on_a_study_file_gives_the_promised_keys(tmp_path):
    """Three readers who mostly agree; ratings that follow a stored figure."""
    from napari_mlmi_interp.framework import Assessment
    from napari_mlmi_interp.framework.evidence import Figure

    rng = np.random.default_rng(5)
    truth = rng.integers(1, 6, 12)
    paths = []
    for r, reader in enumerate(("ana", "ben", "cho")):
        path = tmp_path / f"{reader}.sqlite"
        paths.append(path)
        with StudyStore(path, reader=reader) as s:
            for i in range(12):
                run = s.add_run(
                    CASE(i), model="m", model_sha256="abc", method=("ig", "gradcam")[i % 2], target="t"
                )
                if r == 0:
                    fig = Figure("relevance_mass_accuracy", float(truth[i]) / 5 + 0.01 * i, "pass")
                    s.record_evidence(run, Assessment(figures={"relevance_mass_accuracy": fig}))
                s.rate(run, "localization", int(np.clip(truth[i] + (i + r) % 3 - 1, 1, 5)))
                s.set_action(run, "accept")
    out = analyze_study(paths, n_boot=200)
    ag = out["agreement"]["localization"]
    assert set(ag) >= {"krippendorff_alpha", "ci95", "readers", "items"}
    assert (ag["readers"], ag["items"]) == (3, 12) and ag["krippendorff_alpha"] > 0.5
    assert len(out["pairwise_kappa"]["localization"]) == 3
    rmf = out["rating_vs_figures"]["localization"]["relevance_mass_accuracy"]
    assert rmf["n"] == 12 and rmf["spearman_rho"] > 0.8
    assert out["league"][0]["actions"]["accept"] == 1.0
    assert out["counts"]["readers"] == ["ana", "ben", "cho"] and out["counts"]["ratings"] == 36


def CASE(i):
    return f"case-{i:016x}"


def test_analysis_reports_progress_and_stops_when_cancelled(tmp_path):
    from napari_mlmi_interp.explain import Cancelled, CancelToken

    path = tmp_path / "s.sqlite"
    with StudyStore(path, reader="ana") as s:
        for i in range(3):
            s.rate(
                s.add_run(CASE(i), model="m", model_sha256="abc", method="ig", target="t"), "localization", 3
            )
    seen = []
    analyze_study([path], n_boot=10, progress=lambda d, t: seen.append((d, t)))
    assert seen[0] == (0, 6) and seen[-1] == (6, 6)
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        analyze_study([path], cancel=token)
