"""Where a training run starts: the Docker images and containers `fab` drives.

The `trainer` package is what runs; this package only builds the image it runs
in (`images`) and starts it with the right mounts and settings (`containers`),
through one connection to the Docker engine (`engine`), or starts tuning
workers on other hosts (`workers`). `cli` is what the fab tasks share;
`program` is the `fab` command itself.
"""

# A user error's exit status, the same as `python -m trainer` gives. Kept here, free
# of imports: `program` loads before the fabfile, and must not import `trainer` from
# the installed checkout before Fabric puts the fabfile's own checkout on sys.path.
USER_ERROR_STATUS = 2
