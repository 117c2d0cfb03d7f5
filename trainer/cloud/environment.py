"""The environment variables of Google's conventions (and the emulators'), named once.

`clients` reads them; `fab` passes them on to the trainer it starts elsewhere, a
container or a tuning worker on another host. Free of imports: `fab` imports this
for every command, and local runs never load the Google Cloud libraries.
"""

CREDENTIALS = "GOOGLE_APPLICATION_CREDENTIALS"
PROJECT = "GOOGLE_CLOUD_PROJECT"
STORAGE_EMULATOR = "STORAGE_EMULATOR_HOST"
BIGQUERY_EMULATOR = "BIGQUERY_EMULATOR_HOST"
# What a container or a worker gets from fab's environment when set. Not CREDENTIALS: its value is a
# path on fab's host, so a container gets the file mounted, and a worker host uses its own credentials.
PASSED_THROUGH = (PROJECT, STORAGE_EMULATOR, BIGQUERY_EMULATOR)
