"""BASE/models.config: TF Serving's ModelServerConfig, as text, written with TF Serving's own protos.

    model_config_list { config { name: "deep_v1" base_path: "/models/deep_v1" model_platform: "tensorflow"
      model_version_policy { specific { versions: 1 versions: 3 } }
      version_labels { key: "stable" value: 1 } version_labels { key: "canary" value: 3 } } }

A model's entry is rebuilt from its history (history.State) inside storage.update,
which holds a lock (locally) or the generation read (GCS) across the read and the
write: two writers never lose each other's model, and the last writer lists the
history after every entry written before it. Other models' entries are kept as
they are. TF Serving polls the file (--model_config_file_poll_wait_seconds) and
loads the versions listed: a version is listed only once its push finished.
"""

from __future__ import annotations

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from trainer.data import storage
from trainer.deploy.history import read_entries, state_of
from trainer.deploy.versions import CONFIG_NAME, ModelHome
from trainer.errors import DeployError

PLATFORM = "tensorflow"
LOCAL_SERVING_BASE = "/models"  # where the README's docker run mounts a local BASE


def serving_base(base: str, given: str) -> str:
    """Where TF Serving finds BASE: --serving-base, else a gs:// (any remote) BASE itself, else /models."""
    return given or (base if storage.scheme_of(base) else LOCAL_SERVING_BASE)


def read_config(text: bytes | None, uri: str) -> model_server_config_pb2.ModelServerConfig:
    config = model_server_config_pb2.ModelServerConfig()
    if text:
        try:
            text_format.Parse(text.decode(), config)
        except (text_format.ParseError, UnicodeDecodeError) as exc:
            raise DeployError(f"{uri}: not a TF Serving model config ({exc}); fix or remove it") from None
    return config


def model_names(base: str) -> list[str]:
    """The models BASE's models.config lists."""
    uri = storage.join(base, CONFIG_NAME)
    text = storage.read_bytes(uri) if storage.exists(uri) else None
    return [model.name for model in read_config(text, uri).model_config_list.config]


def write_config(home: ModelHome, base_path: str = "") -> str:
    """Rebuild this model's entry from its history; returns the file's new text."""

    def change(current: bytes | None) -> bytes:
        config = read_config(current, home.config_uri)
        models = config.model_config_list.config
        entry = next((model for model in models if model.name == home.name), None)
        if entry is None:
            entry = models.add(name=home.name, model_platform=PLATFORM,
                               base_path=storage.join(base_path or serving_base(home.base, ""), home.name))
        elif base_path:
            entry.base_path = storage.join(base_path, home.name)
        state = state_of(read_entries(home))  # read here: after every entry written before this write
        entry.model_version_policy.Clear()
        entry.model_version_policy.specific.versions.extend(state.served)
        entry.version_labels.clear()
        entry.version_labels.update(state.labels)
        return text_format.MessageToString(config).encode()

    return storage.update(home.config_uri, change).decode()
