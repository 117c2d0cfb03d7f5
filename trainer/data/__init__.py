"""The data stage: files by URI (`storage`), a dataset's files into one
DataFrame (`dataset`, reading each file with `ndjson` and decoding BigQuery's
values with `values`), its train/validation/test `splits`, raw columns into
model inputs (`features`), and the synthetic click-through generator
(`synthetic`)."""
