"""napari_chromagan.device: the one place that reads the torchrun environment and picks devices."""

from __future__ import annotations

import pytest
import torch

from napari_chromagan.device import TorchrunEnv, rank_device, select_device, torchrun_env
from napari_chromagan.errors import DeviceError


def test_without_torchrun_there_is_one_main_process():
    env = torchrun_env({})
    assert env == TorchrunEnv(rank=0, world_size=1, local_rank=0)
    assert env.is_main and not env.distributed
    # blank values are torchrun's defaults too
    assert torchrun_env({"RANK": " ", "WORLD_SIZE": "", "LOCAL_RANK": ""}) == env


def test_torchrun_values_are_read_as_set():
    env = torchrun_env({"RANK": "5", "WORLD_SIZE": "8", "LOCAL_RANK": "1"})
    assert (env.rank, env.world_size, env.local_rank) == (5, 8, 1)
    assert env.distributed and not env.is_main


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"RANK": "x", "WORLD_SIZE": "2"}, "$RANK must be a whole number, got 'x'"),
        ({"RANK": "0", "WORLD_SIZE": "two"}, "$WORLD_SIZE must be a whole number"),
        (
            {"RANK": "2", "WORLD_SIZE": "2"},
            "inconsistent torchrun environment: RANK=2, WORLD_SIZE=2",
        ),
        ({"RANK": "0", "WORLD_SIZE": "0"}, "WORLD_SIZE=0"),
        ({"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "-1"}, "LOCAL_RANK=-1"),
    ],
)
def test_a_malformed_environment_is_a_device_error(environ, message):
    with pytest.raises(DeviceError) as info:
        torchrun_env(environ)
    assert message in str(info.value)


def test_each_torchrun_process_gets_its_own_gpu_only_when_it_asked_for_one(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert rank_device("auto", 3) == "cuda:3"
    assert rank_device(" CUDA ", 2) == "cuda:2"
    assert rank_device("cuda:0", 3) == "cuda:0"  # an explicit GPU stands
    assert rank_device("cpu", 3) == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert rank_device("auto", 3) == "auto"  # select_device then picks what exists


def test_select_device_names_what_it_picked():
    dev, info = select_device("cpu")
    assert dev == torch.device("cpu") and info == "cpu"
    assert select_device(torch.device("cpu"))[0] == torch.device("cpu")
    with pytest.raises(DeviceError, match="unsupported device 'meta'"):
        select_device("meta")
    with pytest.raises(DeviceError, match="unknown device 'gpu9'"):
        select_device("gpu9")
