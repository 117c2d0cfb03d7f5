"""The data stage: files by URI (`storage`), NDJSON into a DataFrame and its
splits (`dataset`), raw columns into model inputs (`features`), and the
synthetic click-through generator (`synthetic`)."""
