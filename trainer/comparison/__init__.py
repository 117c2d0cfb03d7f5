"""fab compare: two or more packages side by side, and whether one measurably beats another.

    read (small members, ranged reads) -> config diff -> datasets and splits -> metrics
    -> overlaid epoch curves (PNG) -> paired bootstrap of the test AUC on shared test rows

`trainer.comparison.compare.compare_packages` runs these stages in order; `report` words them.
Only the bootstrap loads models and data, and only for packages that share a test split.

fab tensorboard (`tensorboard`): every package of a folder as one TensorBoard run, under one
HParams experiment, and TensorBoard started on them.
"""
