"""fab push, label, rollback, history: a package into TF Serving's layout, in a folder and in gs://.

Two more packages are made for the module: "chance", deep_v1 trained one epoch
at learning rate 1e-12 (it stays at its initial weights, about chance), and a
copy of it under another run id (the same model, a different package). The
session's `trained` package is the good one. The gate scores on the whole
sample (--against): 2,000 rows tell the trained model from chance every time,
where the 400 test rows might not. Every models.config written is parsed with
TF Serving's own protos.
"""

from __future__ import annotations

import io
import json
import shutil
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import QUICK, SAMPLE, Runner, TrainedPackage
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from trainer.data import storage
from trainer.deploy.gate import Rule
from trainer.deploy.history import append, read_entries
from trainer.deploy.push import PushRequest, move_label, push, rollback, show_history
from trainer.deploy.versions import ModelHome, claim_version
from trainer.errors import DeployError, TrainerError
from trainer.faults import KILL_AT_VARIABLE
from trainer.package.layout import MANIFEST_FILE
from trainer.run import TrainRequest, train

MODEL = "deep_v1"  # the packages' variant: the model's default name
ANY_AUC = Rule(min_auc=0.0)  # for the chance-level packages' first pushes
# Two pushes at once: the race decides whether the second is judged against the first, so nothing may refuse it.
ANY_CANDIDATE = Rule(min_auc=0.0, tolerance=1.0)


@dataclass(frozen=True)
class Packages:
    good: str  # the session's deep_v1, two epochs
    chance: str  # deep_v1 that learned nothing
    chance_again: str  # the same model under another run id
    good_again: str


def renamed(uri: str, copy: Path, suffix: str) -> str:
    """A copy of the package under another run id: another package with the same model."""
    with zipfile.ZipFile(uri) as source, zipfile.ZipFile(copy, "w") as target:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename == MANIFEST_FILE:
                manifest = json.loads(data)
                data = json.dumps({**manifest, "run_id": manifest["run_id"] + suffix}).encode()
            target.writestr(item, data)
    return str(copy)


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory, trained: TrainedPackage) -> Packages:
    folder = tmp_path_factory.mktemp("push")
    request = TrainRequest(MODEL, dataset=str(SAMPLE), output=str(folder / "runs"),
                           environ={**QUICK, "TRAINER_EPOCHS": "1", "TRAINER_LEARNING_RATE": "1e-12"})
    chance = train(request, io.StringIO()).package_uri
    good = str(trained.zip_path)
    return Packages(good, chance, renamed(chance, folder / "chance-again.zip", "-again"),
                    renamed(good, folder / "good-again.zip", "-again"))


@pytest.fixture(params=["local", "gcs"])
def base(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """BASE: a local folder, or a prefix in the GCS emulator."""
    if request.param == "local":
        return str(tmp_path / "models")
    return request.getfixturevalue("gcs_prefix") + "/models"


def served(base: str) -> model_server_config_pb2.ModelServerConfig:
    """BASE/models.config as TF Serving parses it."""
    return text_format.Parse(storage.read_bytes(storage.join(base, "models.config")).decode(),
                             model_server_config_pb2.ModelServerConfig())


def labels(base: str) -> dict[str, int]:
    (model,) = served(base).model_config_list.config
    return dict(model.version_labels)


def versions(base: str) -> list[int]:
    """The version folders TF Serving would find: all-digit names with a saved_model.pb."""
    return sorted(int(name.split("/")[0]) for name in storage.list_tree(storage.join(base, MODEL))
                  if name.split("/")[0].isdigit() and name.endswith("/saved_model.pb"))


def pushed(package: str, base: str, **options: object) -> tuple[int, str]:
    out = io.StringIO()
    version = push(PushRequest(package, base, against=str(SAMPLE), **options), out)
    return version, out.getvalue()


def test_the_gate_labels_rollback_and_history(base: str, packages: Packages) -> None:
    version, printed = pushed(packages.chance, base, rule=ANY_AUC)
    assert version == 1 and "no stable version yet: the threshold alone" in printed
    assert labels(base) == {"stable": 1}, "the first push is stable"
    (model,) = served(base).model_config_list.config
    assert model.name == MODEL and model.model_platform == "tensorflow"
    assert list(model.model_version_policy.specific.versions) == [1]

    version, printed = pushed(packages.good, base)  # blessed: the new stable
    verdict = [line for line in printed.splitlines() if line.startswith("gate passed")]
    assert version == 2 and len(verdict) == 1 and "vs stable version 1" in verdict[0]
    assert labels(base) == {"stable": 2}

    before = storage.list_tree(base)
    with pytest.raises(DeployError, match=r"^gate refused: .* vs stable version 2 .*nothing pushed") as refused:
        pushed(packages.chance_again, base)
    assert "\n" not in str(refused.value) and storage.list_tree(base) == before, "a refused push wrote"

    version, printed = pushed(packages.chance_again, base, force=True, label="canary")
    assert version == 3 and "pushed anyway (--force)" in printed
    assert labels(base) == {"stable": 2, "canary": 3} and versions(base) == [1, 2, 3]

    assert rollback(base, "", io.StringIO()) == 1 and labels(base) == {"stable": 1, "canary": 3}
    move_label(base, MODEL, "canary", 2, io.StringIO())
    assert labels(base) == {"stable": 1, "canary": 2}
    (model,) = served(base).model_config_list.config
    assert list(model.model_version_policy.specific.versions) == [1, 2, 3], "labelled ones and the newest"

    out = io.StringIO()
    show_history(base, MODEL, out)
    lines = out.getvalue().splitlines()
    assert [line.split()[3] for line in lines] == ["push", "push", "push", "rollback", "label"]
    assert "FORCED" in lines[2] and all("not forced" in line for line in lines[:2])
    assert "gate refused: auc" in lines[2] and "stable v2" in lines[2] and "stable 2 -> 1" in lines[3]
    assert "canary 3 -> 2" in lines[4]
    assert pushed(packages.good, base)[1].startswith("deep_v1-") and versions(base) == [1, 2, 3], \
        "pushing a package again makes no new version"


# Half-copied in gs:// (objects appear one by one); after the copy, before the history entry, in a folder
# (its staging is renamed whole: a kill before the rename leaves only staging, which the rerun removes).
@pytest.mark.parametrize(("target", "point"), [("gcs", "push:half-copied"), ("local", "push:copied")])
def test_a_push_killed_then_run_again_ends_with_one_whole_version(
        request: pytest.FixtureRequest, tmp_path: Path, run_fab: Runner, packages: Packages, target: str,
        point: str) -> None:
    env = request.getfixturevalue("cloud_env") if target == "gcs" else {}
    base = request.getfixturevalue("gcs_prefix") + "/models" if target == "gcs" else str(tmp_path / "models")
    proc = run_fab("push", packages.good, "--to", base, env={**env, KILL_AT_VARIABLE: point})
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert versions(base) == ([1] if point == "push:copied" else []), "a half-copied version is visible"
    assert not storage.exists(storage.join(base, "models.config"))

    assert push(PushRequest(packages.good, base), io.StringIO()) == 1
    assert versions(base) == [1] and labels(base) == {"stable": 1}
    assert not [name for name in storage.list_tree(base) if ".staging-" in name or ".partial" in name]
    assert [entry["version"] for entry in read_entries(ModelHome(base, MODEL))] == [1]


def test_claims_and_history_entries_at_once_never_collide(base: str) -> None:
    home, writers = ModelHome(base, MODEL), 6
    start, claimed, sequences = threading.Barrier(writers), [], []

    def claim_and_record(writer: int) -> None:
        start.wait()
        claimed.append(claim_version(home, {"run_id": f"r{writer}"}))
        sequences.append(append(home, {"action": "label", "version": 1, "label": f"l{writer}"}))

    threads = [threading.Thread(target=claim_and_record, args=(w,)) for w in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(claimed) == list(range(1, writers + 1))
    assert sorted(sequences) == list(range(1, writers + 1))
    assert sorted(e["label"] for e in read_entries(home)) == [f"l{w}" for w in range(writers)], "an entry was lost"


def test_two_pushes_at_once_take_two_versions(base: str, packages: Packages) -> None:
    start, errors = threading.Barrier(2), []

    def push_one(package: str) -> None:
        start.wait()
        try:
            push(PushRequest(package, base, rule=ANY_CANDIDATE), io.StringIO())
        except Exception as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=push_one, args=(p,)) for p in (packages.chance, packages.chance_again)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert versions(base) == [1, 2]
    entries = read_entries(ModelHome(base, MODEL))
    assert sorted(e["version"] for e in entries) == [1, 2] and len({e["run_id"] for e in entries}) == 2
    (model,) = served(base).model_config_list.config
    assert 2 in model.model_version_policy.specific.versions and "stable" in model.version_labels


def test_a_champion_of_other_inputs_or_gone_is_one_line(tmp_path: Path, packages: Packages) -> None:
    base = str(tmp_path / "models")
    pushed(packages.chance, base, rule=ANY_AUC)
    metadata = Path(base, MODEL, "1.json")
    recorded = json.loads(metadata.read_text())
    metadata.write_text(json.dumps({**recorded, "inputs": {"country": "string"}}))
    with pytest.raises(DeployError, match=r"takes other raw inputs than stable version 1 .*added .*--force"):
        pushed(packages.good, base)
    metadata.write_text(json.dumps(recorded))
    shutil.rmtree(Path(base, MODEL, "1"))
    with pytest.raises(DeployError, match="stable names version 1, which is not there"):
        pushed(packages.good, base)
    assert versions(base) == []


def test_an_unreachable_bucket_is_one_line(cloud_env: dict[str, str], packages: Packages) -> None:
    with pytest.raises(TrainerError, match="gs://no-such-bucket-for-push: no such bucket"):
        push(PushRequest(packages.good, "gs://no-such-bucket-for-push/models"), io.StringIO())


def test_fab_history_prints_the_pushes(tmp_path: Path, run_fab: Runner, packages: Packages) -> None:
    base = str(tmp_path / "models")
    pushed(packages.good, base)
    proc = run_fab("history", "--to", base)
    assert proc.returncode == 0, proc.stderr
    (line,) = proc.stdout.splitlines()
    assert "push" in line and "version 1" in line and "stable - -> 1" in line and "gate passed" in line
