"""The package: one zip per run, written whole or not at all, and read back.

    manifest.json             run id, code commit, library versions, device, timings, pyformance metrics,
                              the epoch whose weights are packaged, its validation and the test metrics
    config.json               the resolved config, with the level that set each key
    dataset.json              source, content hash, rows, the split (method, seed or time column; each
                              split's rows, label rate, time range), schema, cardinalities
    metrics.csv               one row per epoch: train_* and validation_* loss, auc, logloss, accuracy, speed
    metrics.png               the same, train vs validation per epoch
    model/model.keras         the trained Keras model (inputs: encoded features)
    model/preprocessing.json  the vocabularies and statistics that encode raw rows for it
    tensorboard/              TensorBoard scalars of metrics.csv, train/ and validation/ (`tensorboard --logdir`)

`trainer.package.assemble` puts it together, `trainer.package.writer` writes it, `trainer.package.loader` reads it back,
`trainer.package.listing` lists a folder of them.
"""

MODEL_FILE = "model/model.keras"
PREPROCESSING_FILE = "model/preprocessing.json"
REQUIRED_FILES = (
    "manifest.json", "config.json", "dataset.json", "metrics.csv", "metrics.png", MODEL_FILE, PREPROCESSING_FILE,
)
