"""fab push, label, rollback, history: a package's SavedModel into TF Serving's layout, behind a gate.

    BASE/models.config              TF Serving's model_config_list: each model's served versions and labels
    BASE/NAME/<version>/            the package's model/serving/1/ (a SavedModel), one integer per push
    BASE/NAME/<version>.json        what was pushed: package, variant, dataset, inputs, the gate's numbers
    BASE/NAME/history/<seq>.json    one entry per push, label move or rollback, each written once

`push` runs: the candidate read -> the gate (`gate`) against the version labelled stable -> a version
claimed (`versions`) -> its files published whole -> a history entry (`history`) -> models.config
rewritten from the history (`labels`). Every write goes through trainer.data.storage, so BASE is a
local folder or a gs:// prefix alike.
"""
