from __future__ import annotations

import pytest

from clca_deploy.serving.pbtxt import Enum, to_pbtxt
from tests.serving.conftest import parse_config_text, require_module


def test_nested_repeated_and_enum_fields_read_back():
    text = to_pbtxt({
        "name": "m",
        "max_batch_size": 8,
        "input": [{"name": "x", "data_type": Enum("TYPE_FP32"), "dims": [3, 224, 224]}],
        "output": [{"name": "y", "data_type": Enum("TYPE_FP32"), "dims": [15]}, {"name": "z", "data_type": Enum("TYPE_STRING"), "dims": [1]}],
        "dynamic_batching": {"max_queue_delay_microseconds": 100},
        "instance_group": [{"count": 2, "kind": Enum("KIND_CPU")}],
        "parameters": [{"key": "k", "value": {"string_value": "v"}}],
    })
    config = parse_config_text(text)
    assert config.name == "m" and config.max_batch_size == 8
    assert list(config.input[0].dims) == [3, 224, 224] and config.input[0].data_type == require_module("tritonclient.grpc.model_config_pb2").TYPE_FP32
    assert [o.name for o in config.output] == ["y", "z"]
    assert config.dynamic_batching.max_queue_delay_microseconds == 100
    assert config.instance_group[0].count == 2 and config.instance_group[0].kind == config.instance_group[0].KIND_CPU
    assert config.parameters["k"].string_value == "v"


@pytest.mark.parametrize("value", ['quote " and backslash \\', "Salix × rubens", "Äpfel\nzweite Zeile\t", "葉", "{\"json\": [1]}"])
def test_strings_survive_the_round_trip(value):
    assert parse_config_text(to_pbtxt({"name": value})).name == value


def test_unknown_value_types_are_refused():
    with pytest.raises(TypeError, match="cannot write"):
        to_pbtxt({"name": object()})
