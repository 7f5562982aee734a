"""A train job's spec: typed errors before anything is queued (same rules on the worker)."""

from __future__ import annotations

import json

import pytest

from elastiq import trainspec
from elastiq.errors import (
    BadHyperParamsError,
    InputTypeError,
    UnknownDatasetError,
    UnknownModelError,
    ValidationError,
)
from elastiq.registry import Registry
from elastiq.settings import Limits
from elastiq.validate import validate_job

REG = Registry.from_env({})


def test_defaults_and_round_trip():
    spec = trainspec.parse({"dataset": "rotten_tomatoes", "base": "minilm", "lr": 3e-5}, REG)
    assert spec.epochs == 2 and spec.lr == 3e-5 and spec.student_layers == 2
    assert trainspec.parse(spec.to_json(), REG) == spec


@pytest.mark.parametrize("raw, error", [
    ({"dataset": "imdb", "base": "minilm"}, UnknownDatasetError),
    ({"dataset": "rotten_tomatoes", "base": "bert-large"}, UnknownModelError),
    ({"dataset": "rotten_tomatoes", "base": "train"}, UnknownModelError),
    ({"dataset": "rotten_tomatoes", "base": "minilm", "epochs": 0}, BadHyperParamsError),
    ({"dataset": "rotten_tomatoes", "base": "minilm", "epochs": 2.5}, BadHyperParamsError),
    ({"dataset": "rotten_tomatoes", "base": "minilm", "lr": float("nan")}, BadHyperParamsError),
    ({"dataset": "rotten_tomatoes", "base": "minilm", "lr": 1.0}, BadHyperParamsError),
    ({"dataset": "rotten_tomatoes", "base": "minilm", "batch_size": True}, BadHyperParamsError),
    ({"dataset": "rotten_tomatoes", "base": "minilm", "max_train": 1}, BadHyperParamsError),
    ({"dataset": "rotten_tomatoes", "base": "minilm", "momentum": 0.9}, BadHyperParamsError),
    ({"dataset": "rotten_tomatoes", "base": "minilm", "name": "a/b"}, BadHyperParamsError),
    ("not json", InputTypeError),
])
def test_bad_specs_are_typed_validation_errors(raw, error):
    with pytest.raises(error):
        trainspec.parse(raw, REG)
    assert issubclass(error, ValidationError)


def test_validate_job_checks_the_spec_of_a_train_job():
    good = json.dumps({"dataset": "rotten_tomatoes", "base": "minilm"})
    assert validate_job("train", [good], {}, REG, Limits())[1] == [good]
    with pytest.raises(UnknownDatasetError):
        validate_job("train", [json.dumps({"dataset": "x", "base": "minilm"})], {}, REG, Limits())
    with pytest.raises(InputTypeError):
        validate_job("train", [good, good], {}, REG, Limits())
