"""Charts: titles in words, files written."""

import numpy as np
import pandas as pd

from models.plots import calibration_curves, fold_words, pr_curves


def test_a_fold_is_named_in_words():
    assert fold_words("temporal_2016") == "new belts of 2016"
    assert fold_words("temporal_2025Q3") == "new belts of 2025Q3"
    assert fold_words("spatial_0") == "spatial_0"


def test_the_curves_of_a_fold_are_written(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)  # SYNTHETIC predictions of two models on one fold
    y = (rng.random(400) < 0.05).astype(int)
    rows = pd.concat(
        [pd.DataFrame({"fold": "temporal_2016", "model": m, "y": y, "p": rng.random(400)}) for m in ("a", "b")]
    )
    titles = []
    monkeypatch.setattr("models.plots._save", lambda figure, path: titles.append(figure.axes[0].get_title()) or path)

    pr_curves(rows, "temporal_2016", tmp_path / "pr.png")
    calibration_curves(rows, "temporal_2016", tmp_path / "cal.png")

    assert titles == ["Precision-recall, new belts of 2016", "Calibration, new belts of 2016 (quantile bins)"]
