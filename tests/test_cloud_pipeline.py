"""The whole cloud path, as a user types it: BigQuery -> GCS -> train -> package in GCS -> download -> score."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pandas as pd
from cloud_fixtures import CloudEmulators, copy_exports_to_gcs
from conftest import PROJECT_ROOT, QUICK, Runner

from trainer.data import storage


def test_bigquery_to_gcs_to_a_package_in_gcs_that_scores(
        run_fab: Runner, cloud_env: dict[str, str], cloud_emulators: CloudEmulators, gcs_prefix: str,
        raw_event_tables: pd.DataFrame, tmp_path: Path) -> None:
    dataset = f"{gcs_prefix}/ctr/train-*.json"
    exported = run_fab("dataset", "--sql", str(PROJECT_ROOT / "sql" / "training_table.sql"), "--dest", dataset,
                       "--param", "start_date=2026-10-01", "--param", "end_date=2026-10-31", env=cloud_env)
    assert exported.returncode == 0, exported.stderr
    assert f"exported {len(raw_event_tables):,} rows" in exported.stdout
    copy_exports_to_gcs(cloud_emulators)

    trained = run_fab("train", "--local", "--variant", "deep_v1", "--dataset", dataset,
                      "--output", f"{gcs_prefix}/runs", env={**cloud_env, **QUICK})
    assert trained.returncode == 0, trained.stderr
    [package] = storage.expand(f"{gcs_prefix}/runs/*.zip")
    assert package in trained.stdout

    listed = run_fab("runs", "--output", f"{gcs_prefix}/runs", env=cloud_env)
    assert Path(package).stem in listed.stdout

    with zipfile.ZipFile(storage.local_copy(package)) as archive:
        dataset_json = json.loads(archive.read("dataset.json"))
    metadata = json.loads(storage.local_copy(f"{gcs_prefix}/ctr/train.metadata.json").read_text())
    assert dataset_json["export"] == metadata
    assert dataset_json["export"]["rows"] == dataset_json["rows"] == len(raw_event_tables)

    scores = tmp_path / "scores.json"
    scored = run_fab("score", "--package", package, "--input", dataset, "--output", str(scores), env=cloud_env)
    assert scored.returncode == 0, scored.stderr
    frame = pd.read_json(scores, lines=True)
    assert len(frame) == len(raw_event_tables)
    assert set(frame["impression_id"]) == set(raw_event_tables["impression_id"])
    assert frame["score"].between(0, 1).all()
