"""Google Cloud adapters: the clients and their errors as one line (`clients`),
`gs://` storage (`gcs`) and BigQuery SQL to NDJSON (`bigquery_export`).

Imported only for `gs://` URIs and `fab dataset`, so local runs never load the
Google Cloud libraries."""
