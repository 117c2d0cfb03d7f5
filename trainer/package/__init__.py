"""The package, one zip per run: its `layout`, the `writer` that publishes it
whole or not at all, the `loader` that scores with it, the `listing` of a
folder of them, and the `provenance` (code commit, image) it records.

Kept free of imports here: `fab build` uses `provenance` without TensorFlow."""
