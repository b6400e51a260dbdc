"""Hyperparameter search on Optuna: search files (search.py) and studies (study.py)."""
