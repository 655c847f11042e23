"""The recipe search (``tunegate tune``, Optuna) on validation data only: trials run the
train stage's recipe and score it with evaluation's predictors. Imports the kernel,
``tunegate.training`` and ``tunegate.evaluation``."""
