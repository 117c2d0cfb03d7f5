"""The one module that reaches into Keras' and google-cloud-bigquery's private attributes:
it says what to re-check when a library is upgraded, and each of its functions does its job
on the real libraries."""

from __future__ import annotations

import warnings
from pathlib import Path

import keras
import numpy as np
import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery

from trainer.library_internals import (
    PINNED,
    LibraryVersionWarning,
    adam_slots,
    export_data_statistics,
    functional_layer_calls,
    version_mismatch,
    warn_on_upgrade,
)

REQUIREMENTS = Path(__file__).resolve().parent.parent / "requirements.txt"


def test_the_pins_are_requirements_txt_s() -> None:
    pins = dict(line.split("==") for line in REQUIREMENTS.read_text().splitlines() if "==" in line)
    assert {name: pins[name] for name in PINNED} == PINNED


def test_another_version_warns_once_in_one_line_naming_the_module_to_re_check() -> None:
    installed = {**PINNED, "keras": "3.16.0"}
    with pytest.warns(LibraryVersionWarning) as caught:
        warn_on_upgrade(installed)
    [warning] = caught
    message = str(warning.message)
    assert "\n" not in message
    assert message.startswith("installed keras 3.16.0 (checked against 3.15.1): re-check the private "
                              "attributes trainer/library_internals.py lists for each")
    assert "google-cloud-bigquery" not in message  # the one at its pin is not named


def test_the_pinned_versions_or_a_library_not_installed_warn_nothing() -> None:
    assert version_mismatch(PINNED) is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_on_upgrade({**PINNED, "google-cloud-bigquery": None})


@pytest.mark.parametrize("amsgrad", [False, True])
def test_adam_slots_are_the_moments_of_the_variable_asked_for(amsgrad: bool) -> None:
    first, second = keras.Variable(np.zeros((3, 2), "float32")), keras.Variable(np.zeros(4, "float32"))
    optimizer = keras.optimizers.Adam(beta_1=0.9, beta_2=0.999, amsgrad=amsgrad)
    gradient = np.arange(4, dtype="float32")
    optimizer.apply([np.ones((3, 2), "float32"), gradient], [first, second])
    m, v, v_hat = adam_slots(optimizer, second)
    # After one step from zero: m = (1 - beta_1) g, v = (1 - beta_2) g².
    np.testing.assert_allclose(m.numpy(), 0.1 * gradient, rtol=1e-5)
    np.testing.assert_allclose(v.numpy(), 0.001 * gradient**2, rtol=1e-4)
    assert (v_hat is not None) == amsgrad
    if v_hat is not None:
        np.testing.assert_allclose(v_hat.numpy(), v.numpy())
    np.testing.assert_allclose(adam_slots(optimizer, first)[0].numpy(), np.full((3, 2), 0.1), rtol=1e-5)


def test_functional_layer_calls_list_a_shared_layer_once_per_call_after_what_feeds_it() -> None:
    left, right = keras.Input((3,), name="left"), keras.Input((3,), name="right")
    shared = keras.layers.Dense(2)
    left_out, right_out = shared(left), shared(right)
    total = keras.layers.Add()([left_out, right_out])
    model = keras.Model([left, right], total)

    calls = list(functional_layer_calls(model))
    assert len(calls) == 3  # the Dense twice, the Add once; the inputs are not calls
    made = {id(tensor) for call in calls[:2] for tensor in call.outputs}
    assert {id(call.inputs[0]) for call in calls[:2]} == {id(left), id(right)}
    assert made == {id(left_out), id(right_out)}
    assert [id(t) for t in calls[2].inputs] == [id(left_out), id(right_out)]
    assert [id(t) for t in calls[2].outputs] == [id(total)]


def test_export_data_statistics_come_from_the_job_resource_the_public_repr_drops() -> None:
    client = bigquery.Client(project="test", credentials=AnonymousCredentials())
    statistics = {"rowCount": "2000", "fileCount": "3"}
    resource = {"jobReference": {"projectId": "test", "jobId": "export-1"},
                "configuration": {"query": {"query": "EXPORT DATA ..."}},
                "statistics": {"query": {"exportDataStatistics": statistics}}}
    job = bigquery.QueryJob.from_api_repr(resource, client)
    assert export_data_statistics(job) == statistics
    # Why the private attribute: once the public representation keeps the statistics, use it instead.
    assert "statistics" not in job.to_api_repr()
    empty = bigquery.QueryJob.from_api_repr({**resource, "statistics": {}}, client)
    assert export_data_statistics(empty) == {}
