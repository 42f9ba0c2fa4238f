"""Jetson facts from recorded JetPack files: parsers on their text, readers on a fake root folder."""

from __future__ import annotations

import pytest

from clca_deploy.system import jetson
from clca_deploy.system.jetson import JetsonInfo

# First lines of /etc/nv_tegra_release as JetPack writes them.
RELEASE_36_4_3 = (
    "# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64, DATE: Wed Jan  8 01:49:37 UTC 2025\n"
    "# KERNEL_VARIANT: oot\n"
    "TARGET_USERSPACE_LIB_DIR=nvidia\n"
    "TARGET_USERSPACE_LIB_DIR_PATH=usr/lib/aarch64-linux-gnu/nvidia\n"
)
RELEASE_36_3_0 = "# R36 (release), REVISION: 3.0, GCID: 36191598, BOARD: generic, EABI: aarch64, DATE: Mon May  6 17:34:21 UTC 2024\n"
RELEASE_35_4_1 = "# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref, EABI: aarch64, DATE: Tue Aug  1 19:57:35 UTC 2023\n"

# /etc/nvpmodel.conf of an Orin Nano Super, cut down to the lines that matter here.
NVPMODEL_CONF = """\
# Comment lines start with a hash
# < POWER_MODEL ID=9 NAME=COMMENTED_OUT >
< PARAM TYPE=FILE NAME=CPU_ONLINE >
CORE_0 /sys/devices/system/cpu/cpu0/online
< POWER_MODEL ID=0 NAME=15W >
CPU_ONLINE CORE_0 1
< POWER_MODEL ID=1 NAME=25W >
CPU_ONLINE CORE_0 1
< POWER_MODEL ID=2 NAME=MAXN_SUPER >
CPU_ONLINE CORE_0 1
< POWER_MODEL ID=3 NAME=7W >
CPU_ONLINE CORE_0 1
< PM_CONFIG DEFAULT=2 >
"""


@pytest.mark.parametrize(
    "raw, expected",
    [
        (b"NVIDIA Jetson AGX Orin Developer Kit\x00", "NVIDIA Jetson AGX Orin Developer Kit"),
        ("NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super\x00",
         "NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super"),
        ("\x00", None),
    ],
)
def test_model(raw, expected):
    assert jetson.parse_model(raw) == expected


@pytest.mark.parametrize(
    "text, l4t, jetpack, tensorrt",
    [
        (RELEASE_36_4_3, "36.4.3", "6.2", "10.3.0"),
        (RELEASE_36_3_0, "36.3.0", "6.0", "8.6.2"),
        (RELEASE_35_4_1, "35.4.1", "5.1.2", "8.5.2"),
        ("# R36 (release), REVISION: 4.4, GCID: 41062509, BOARD: generic, EABI: aarch64\n", "36.4.4", "6.2.1", "10.3.0"),
        ("# R36 (release), REVISION: 4.0, GCID: 37537400, BOARD: generic, EABI: aarch64\n", "36.4.0", "6.1", "10.3.0"),
        # Releases outside the table: no JetPack guess; R36.4's TensorRT is still known, R38's is not.
        ("# R36 (release), REVISION: 4.2, GCID: 1, BOARD: generic, EABI: aarch64\n", "36.4.2", None, "10.3.0"),
        ("# R38 (release), REVISION: 2.0, GCID: 1, BOARD: generic, EABI: aarch64\n", "38.2.0", "7.0", None),
        ("# R37 (release), REVISION: 1.0, GCID: 1, BOARD: generic, EABI: aarch64\n", "37.1.0", None, None),
    ],
)
def test_l4t_jetpack_and_tensorrt(text, l4t, jetpack, tensorrt):
    assert jetson.parse_l4t_release(text) == l4t
    assert jetson.jetpack_for_l4t(l4t) == jetpack
    assert jetson.jetpack_tensorrt(l4t) == tensorrt


def test_unparseable_release_file():
    assert jetson.parse_l4t_release("Ubuntu 22.04.4 LTS\n") is None
    assert jetson.jetpack_for_l4t(None) is None
    assert jetson.jetpack_tensorrt(None) is None


def test_nvpmodel_outputs():
    assert jetson.parse_nvpmodel_query("NV Power Mode: MAXN\n0\n") == "MAXN"
    assert jetson.parse_nvpmodel_query("NV Power Mode: 15W\n1\n") == "15W"
    assert jetson.parse_nvpmodel_query("NVPM ERROR: failed to read PARAM\n") is None
    assert jetson.parse_nvpmodel_status("pmode:0000 fmode:quiet\n") == 0
    assert jetson.parse_nvpmodel_status("pmode:0002\n") == 2
    assert jetson.parse_nvpmodel_status("") is None
    assert jetson.parse_nvpmodel_names(NVPMODEL_CONF) == {0: "15W", 1: "25W", 2: "MAXN_SUPER", 3: "7W"}


@pytest.fixture
def root(tmp_path, monkeypatch):
    """An empty filesystem root for the readers, and no nvpmodel binary on PATH."""
    monkeypatch.setattr(jetson, "ROOT", tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    return tmp_path


def write(root, relative, content):
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.write_bytes if isinstance(content, bytes) else path.write_text)(content)


def fake_nvpmodel(root, script_body):
    write(root, "bin/nvpmodel", "#!/bin/sh\n" + script_body)
    (root / "bin/nvpmodel").chmod(0o755)


def test_not_a_jetson(root):
    assert jetson.jetson_info() is None
    assert jetson.read_power_mode() is None


def test_other_arm_board_is_not_a_jetson(root):
    write(root, "proc/device-tree/model", b"Raspberry Pi 4 Model B Rev 1.4\x00")
    assert jetson.jetson_info() is None


def test_orin_nano_super_from_its_files(root):
    write(root, "proc/device-tree/model", b"NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super\x00")
    write(root, "etc/nv_tegra_release", RELEASE_36_4_3)
    write(root, "var/lib/nvpmodel/status", "pmode:0002 fmode:quiet\n")
    write(root, "etc/nvpmodel.conf", NVPMODEL_CONF)
    info = jetson.jetson_info()
    assert info == JetsonInfo(
        model="NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super",
        l4t="36.4.3",
        jetpack="6.2",
        power_mode="MAXN_SUPER",
    )
    assert info.to_dict() == {
        "model": "NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super",
        "l4t": "36.4.3", "jetpack": "6.2", "power_mode": "MAXN_SUPER", "tensorrt": "10.3.0",
    }


def test_power_mode_id_without_names(root):
    write(root, "var/lib/nvpmodel/status", "pmode:0002 fmode:quiet\n")
    assert jetson.read_power_mode() == "mode 2"


def test_power_mode_files_win_over_nvpmodel(root):
    write(root, "var/lib/nvpmodel/status", "pmode:0000\n")
    write(root, "etc/nvpmodel.conf", NVPMODEL_CONF)
    fake_nvpmodel(root, 'printf "NV Power Mode: 25W\\n1\\n"\n')
    assert jetson.read_power_mode() == "15W"


def test_power_mode_from_nvpmodel_when_no_status_file(root):
    fake_nvpmodel(root, '[ "$1" = "-q" ] || exit 3\nprintf "NV Power Mode: MAXN\\n0\\n"\n')
    assert jetson.read_power_mode() == "MAXN"


def test_hanging_nvpmodel_is_cut_short(root, monkeypatch):
    monkeypatch.setattr(jetson, "NVPMODEL_TIMEOUT_S", 0.3)
    fake_nvpmodel(root, "while :; do :; done\n")  # builtins only: PATH holds nothing else
    assert jetson.read_power_mode() is None


def test_jetson_container_without_device_tree(root):
    # l4t-base containers carry /etc/nv_tegra_release but may not see the host's device tree.
    write(root, "etc/nv_tegra_release", RELEASE_35_4_1)
    assert jetson.jetson_info() == JetsonInfo(model=None, l4t="35.4.1", jetpack="5.1.2", power_mode=None)
