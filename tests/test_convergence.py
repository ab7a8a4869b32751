"""The convergence rule every issue uses: the schedule ran to its end and validation macro-F1 gained at most 0.5 pt
over the last max(5, 20 %) epochs (fer_bench.experiment.row.plateau; every row carries its verdict)."""

from __future__ import annotations

from fer_bench.experiment.row import plateau


def _history(values):
    return [{"epoch": i + 1, "val_macro_f1": v} for i, v in enumerate(values)]


def test_a_flat_tail_after_a_full_schedule_converged():
    h = _history([20, 40, 50, 55, 58, 60, 60.2, 60.4, 60.1, 60.5, 60.3, 60.2, 60.4, 60.3, 60.5])  # 15 epochs
    assert plateau(h, 15) == {"converged": True, "plateau_gain_pt": 0.0, "plateau_window": 5}


def test_the_window_is_a_fifth_of_a_long_run_and_a_late_gain_breaks_it():
    h = _history([10.0 + e for e in range(30)] + [40.0] * 19 + [40.6])  # 50 epochs: window 10, last one +0.6
    assert plateau(h, 50) == {"converged": False, "plateau_gain_pt": 0.6, "plateau_window": 10}
    assert plateau(h[:-1] + [_history([40.5])[0]], 50)["converged"] is True  # +0.5 is within the tolerance


def test_a_run_cut_short_or_too_short_to_judge_did_not_converge():
    flat = _history([30.0] * 12)
    assert plateau(flat, 20)["converged"] is False  # early stop / killed: the schedule did not run to its end
    assert plateau(flat[:5], 5) == {"converged": None, "plateau_gain_pt": None, "plateau_window": 5}
    assert plateau(_history([50, 40, 39, 38, 37, 36, 35]), 7) == {  # falling back counts as no gain
        "converged": True,
        "plateau_gain_pt": -11.0,
        "plateau_window": 5,
    }


def test_the_plateau_figure_is_the_mean_over_the_converged_window():
    import numpy as np

    from fer_bench.experiment.row import plateau_figure

    values = [10.0 + e for e in range(30)] + [40.0 + (e % 3) / 10 for e in range(20)]  # 50 epochs: window 10
    got = plateau_figure(_history(values))
    assert got == {"plateau_val_macro_f1": round(float(np.mean(values[-10:])), 4), "plateau_window": 10}
    assert plateau_figure(_history([50, 60, 61, 62]))["plateau_val_macro_f1"] is None  # no window yet


def test_a_choice_between_runs_of_different_lengths_compares_plateaus_not_peaks():
    from fer_bench.experiment.row import recipe_choice

    long = _history([40.0] * 40 + [62.0] + [60.9] * 23)  # 64 epochs: peaked early, settled lower
    short = _history([40.0] * 30 + [61.2] * 14)  # 44 epochs: flat at 61.2
    got = recipe_choice({"long": long, "short": short})
    assert got["figure"] == "plateau_val_macro_f1" and got["chosen"] == "short"  # the peak would pick "long"
    assert got["values"]["long"] < got["values"]["short"]
    same = recipe_choice({"a": long, "b": _history([40.0] * 40 + [61.0] * 24)})  # equal lengths: the peak decides
    assert same["figure"] == "best_val_macro_f1" and same["chosen"] == "a"


def test_a_choice_between_recipes_never_picks_an_unconverged_run():
    from fer_bench.experiment.row import recipe_choice

    settled = _history([40.0] * 30 + [60.0] * 14)
    climbing = _history([40.0] * 30 + [61.0 + e / 10 for e in range(10)])  # higher, but still rising: not converged
    got = recipe_choice({"settled": settled, "climbing": climbing}, converged={"settled": True, "climbing": False})
    assert got["chosen"] == "settled" and got["eligible"] == ["settled"]
    assert got["values"]["climbing"] > got["values"]["settled"]  # still reported, just not eligible
    unknown = recipe_choice({"a": settled, "b": climbing}, converged={"a": None, "b": True})
    assert unknown["chosen"] == "b"  # unknown convergence is not convergence
