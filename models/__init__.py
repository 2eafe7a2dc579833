"""Estimators with the scikit-learn API, baselines, calibration, metrics and the served model."""
