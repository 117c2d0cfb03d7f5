"""The training stage: `fit` runs Keras' fit (resumable, one process per run),
`callbacks` evaluate and report each epoch, `optimizers` holds LazyAdam,
`metrics` the run's pyformance metrics and per-epoch table, `tensorboard` the run's live TensorBoard
logs and what of them goes into the package."""
