"""Where a training run starts: the Docker images and containers `fab` drives.

The `trainer` package is what runs; this package only builds the image it runs
in (`images`) and starts it with the right mounts and settings (`containers`),
through one connection to the Docker engine (`engine`), or starts tuning
workers on other hosts (`workers`). `cli` is what the fab tasks share;
`program` is the `fab` command itself.
"""
