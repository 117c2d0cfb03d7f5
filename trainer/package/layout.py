"""The package: one zip per run, written whole or not at all, and read back.

    manifest.json             run id, code commit, library versions, device, timings, pyformance metrics,
                              the epoch whose weights are packaged, its validation and the test metrics
    config.json               the resolved config, with the level that set each key
    dataset.json              source, content hash, rows, the split (method, seed or time column; each
                              split's rows, label rate, time range), schema, cardinalities
    metrics.csv               one row per epoch: train_* and validation_* loss, auc, logloss, accuracy, speed
    metrics.png               the same, train vs validation per epoch
    model/model.keras         the trained Keras model (inputs: encoded features), without its optimizer
    model/preprocessing.json  the vocabularies and statistics that encode raw rows for it
    model/serving/1/          a SavedModel scoring raw rows (TF Serving's layout): `trainer.serving.export`
    model/README.md           its signatures, dtypes and a TF Serving REST request
    model/data_contract.json  per column: training null rate, validation unseen rate, numeric range
    tensorboard/              TensorBoard scalars of metrics.csv, train/ and validation/ (`tensorboard --logdir`)

`trainer.package.assemble` puts it together, `trainer.package.writer` writes it, `trainer.package.loader` reads it back,
`trainer.package.listing` lists a folder of them.
"""

MODEL_FILE = "model/model.keras"
PREPROCESSING_FILE = "model/preprocessing.json"
SERVING_FOLDER = "model/serving/1"
SERVING_README = "model/README.md"
CONTRACT_FILE = "model/data_contract.json"
# What any package has, those written before the serving export included: enough to score with Keras.
CORE_FILES = (
    "manifest.json", "config.json", "dataset.json", "metrics.csv", "metrics.png", MODEL_FILE, PREPROCESSING_FILE,
)
REQUIRED_FILES = (*CORE_FILES, f"{SERVING_FOLDER}/saved_model.pb", SERVING_README, CONTRACT_FILE)
