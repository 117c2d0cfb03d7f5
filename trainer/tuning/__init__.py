"""Hyperparameter tuning with Optuna: the search `space` file, the `study`
(definition and storage), the `worker` that runs trials as training runs, and
the `report` (leaderboard, best variant) and its `plots`."""
