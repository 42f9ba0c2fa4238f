"""Power and energy in bench: tegrastats parsing on recorded lines, the energy arithmetic, the samplers
with faked sensors (no Jetson or GPU needed), the choice of sensor, and the fields in the report.

No assertion here depends on timing: threads are waited for by counting readings, never by sleeping
for a set time, and every expected number is computed by hand from the fake readings.
"""

from __future__ import annotations

import json
import os
import stat
import sys
import time
import types
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from clca_deploy.bench.latency import LatencyStats, measure_latency
from clca_deploy.bench.power import rails as rails_mod
from clca_deploy.bench.power.jtop import JtopSampler, jtop_rails
from clca_deploy.bench.power.meter import PowerMeasurement, PowerSamplingError, integrate_power
from clca_deploy.bench.power.nvml import NvmlSampler
from clca_deploy.bench.power.picker import pick_power_sampler, power_sampler_for
from clca_deploy.bench.power.rails import board_power_mw, parse_rails
from clca_deploy.bench.power.tegrastats import TegrastatsSampler
from clca_deploy.bench.power.window import POWER_FIELDS, PowerWindow
from clca_deploy.system import gpu as gpu_mod
from clca_deploy.system import jetson as jetson_mod
from clca_deploy.system.gpu import GpuInfo
from tests.system.test_gpu import A2000, H100, FakeDevice, FakeDriver

# Recorded tegrastats lines. The AGX Orin one is the brief's sample (JetPack 6: timestamp first, "mW"
# units, no VDD_IN); the others follow the formats in NVIDIA's tegrastats documentation and in lines
# posted to the NVIDIA forums and the jetson-stats issues, with "now" and "avg" told apart on purpose.
AGX_ORIN_JP6 = (
    "12-02-2026 10:15:01 RAM 5402/30536MB (lfb 5986x4MB) SWAP 0/15268MB (cached 0MB) CPU [2%@729,1%@729,0%@729,"
    "0%@729,0%@2201,0%@2201,0%@2201,0%@2201,off,off,off,off] EMC_FREQ 0%@3199 GR3D_FREQ 0%@[305,305] VIC_FREQ 729 "
    "APE 174 CV0@-256C CPU@48.5C Tboard@36C SOC2@45.125C Tdiode@37.75C SOC0@45.343C CV1@-256C GPU@44.562C "
    "tj@48.531C SOC1@44.062C CV2@-256C VDD_GPU_SOC 3188mW/3188mW VDD_CPU_CV 797mW/797mW VIN_SYS_5V0 4215mW/4215mW "
    "VDDQ_VDD2_1V8AO 503mW/503mW"
)
ORIN_NANO_JP6 = (
    "12-02-2026 10:16:44 RAM 2210/7620MB (lfb 2x4MB) SWAP 0/3810MB (cached 0MB) CPU [1%@729,0%@729,0%@729,0%@729,"
    "0%@729,0%@729] EMC_FREQ 0%@2133 GR3D_FREQ 0%@[305] NVENC off NVDEC off NVJPG off NVJPG1 off VIC off OFA off "
    "APE 200 cpu@47.562C soc2@46.968C soc0@46.281C gpu@48.218C tj@48.218C soc1@46.187C "
    "VDD_IN 5103mW/4987mW VDD_CPU_GPU_CV 597mW/590mW VDD_SOC 1513mW/1500mW"
)
NANO_JP4 = (  # no timestamp, no units, the JetPack 4 rail names
    "RAM 1896/3964MB (lfb 98x4MB) SWAP 0/1982MB (cached 0MB) IRAM 0/252kB(lfb 252kB) CPU [9%@1479,3%@1479,2%@1479,"
    "0%@1479] EMC_FREQ 3%@1600 GR3D_FREQ 0%@921 APE 25 PLL@35.5C CPU@38C PMIC@100C GPU@36.5C AO@43C thermal@37C "
    "POM_5V_IN 2361/2290 POM_5V_GPU 0/0 POM_5V_CPU 318/301"
)
AGX_XAVIER_JP4 = (
    "RAM 2010/15692MB (lfb 3041x4MB) SWAP 0/7846MB (cached 0MB) CPU [1%@1190,0%@1190,0%@1190,0%@1190,off,off,off,"
    "off] EMC_FREQ 0%@1331 GR3D_FREQ 0%@318 APE 150 MTS fg 0% bg 0% AO@38C GPU@38C Tdiode@40.5C PMIC@100C AUX@37.5C "
    "CPU@39C thermal@38.6C Tboard@37C GPU 0/0 CPU 155/160 SOC 932/930 CV 0/0 VDDRQ 155/150 SYS5V 1252/1250"
)
AGX_ORIN_NO_5V0 = AGX_ORIN_JP6.replace("VIN_SYS_5V0 4215mW/4215mW ", "")
ORIN_NANO_NO_VDD_IN = ORIN_NANO_JP6.replace("VDD_IN 5103mW/4987mW ", "")


# -- parsing --------------------------------------------------------------------------------------------


def test_rails_of_the_agx_orin_line():
    rails = parse_rails(AGX_ORIN_JP6)
    assert rails == {"VDD_GPU_SOC": 3188, "VDD_CPU_CV": 797, "VIN_SYS_5V0": 4215, "VDDQ_VDD2_1V8AO": 503}
    # No VDD_IN: the three module inputs, not the memory rail fed from the 5 V input.
    assert board_power_mw(rails) == (3188 + 797 + 4215, "VDD_GPU_SOC+VDD_CPU_CV+VIN_SYS_5V0")


def test_rails_of_the_orin_nano_line_take_the_instantaneous_value():
    rails = parse_rails(ORIN_NANO_JP6)
    assert rails == {"VDD_IN": 5103, "VDD_CPU_GPU_CV": 597, "VDD_SOC": 1513}  # before the slash, not the average
    assert board_power_mw(rails) == (5103.0, "VDD_IN")  # the sub-rails are inside VDD_IN, never added


def test_older_formats_without_timestamp_or_units():
    nano = parse_rails(NANO_JP4)
    assert nano == {"POM_5V_IN": 2361, "POM_5V_GPU": 0, "POM_5V_CPU": 318}  # RAM, SWAP and IRAM are not rails
    assert board_power_mw(nano) == (2361.0, "POM_5V_IN")
    xavier = parse_rails(AGX_XAVIER_JP4)
    assert xavier == {"GPU": 0, "CPU": 155, "SOC": 932, "CV": 0, "VDDRQ": 155, "SYS5V": 1252}
    assert board_power_mw(xavier) == (155 + 932 + 155 + 1252, "GPU+CPU+SOC+CV+VDDRQ+SYS5V")


def test_a_line_with_a_rail_missing_gives_no_board_power():
    assert board_power_mw(parse_rails(AGX_ORIN_NO_5V0)) is None  # a partial sum would read low
    assert board_power_mw(parse_rails(ORIN_NANO_NO_VDD_IN)) is None  # sub-rails alone are not the board
    assert parse_rails("RAM 5402/30536MB (lfb 5986x4MB) SWAP 0/15268MB (cached 0MB)") == {}
    assert board_power_mw({}) is None


def test_jtop_rails_put_the_total_back():
    power = {
        "rail": {"VDD_CPU_GPU_CV": {"power": 597, "avg": 590}, "VDD_SOC": {"power": 1513, "avg": 1500}},
        "tot": {"power": 5103, "avg": 4987, "name": "VDD_IN"},
    }
    assert jtop_rails(power) == {"VDD_CPU_GPU_CV": 597.0, "VDD_SOC": 1513.0, "VDD_IN": 5103.0}
    agx = {"rail": {n: {"power": v} for n, v in parse_rails(AGX_ORIN_JP6).items()}, "tot": {"power": 8703}}
    assert board_power_mw(jtop_rails(agx)) == (8200.0, "VDD_GPU_SOC+VDD_CPU_CV+VIN_SYS_5V0")  # not jtop's 8703


# -- energy arithmetic ------------------------------------------------------------------------------------


def test_integrate_power_by_hand():
    # Window [0.5, 5.0]; readings 10 W at 1 s, 20 W at 2 s and 4 s. Held to the edges, trapezoids between:
    # 10*0.5 + (10+20)/2*1 + (20+20)/2*2 + 20*1 = 5 + 15 + 40 + 20 = 80 J over 4.5 s.
    mean_w, energy_j = integrate_power([(2.0, 20.0), (1.0, 10.0), (4.0, 20.0)], 0.5, 5.0)
    assert energy_j == pytest.approx(80.0)
    assert mean_w == pytest.approx(80.0 / 4.5)
    assert integrate_power([(2.0, 7.0)], 1.0, 3.0) == pytest.approx((7.0, 14.0))  # one reading: the whole window
    with pytest.raises(ValueError):
        integrate_power([], 0.0, 1.0)
    with pytest.raises(ValueError):
        integrate_power([(1.0, 1.0)], 1.0, 1.0)


class FakeSampler:
    """Stands in for a sampler: records when it was started and stopped, returns a set measurement."""

    source = "fake sensor"

    def __init__(self, log=None, measurement=None, fail_start=None, fail_stop=None):
        self.log = [] if log is None else log
        self.measurement = measurement or PowerMeasurement(10.0, 2.0, 40, 2.0, "fake sensor", "MAXN")
        self.fail_start, self.fail_stop = fail_start, fail_stop

    def start(self):
        self.log.append("start")
        if self.fail_start:
            raise self.fail_start

    def stop(self):
        self.log.append("stop")
        if self.fail_stop:
            raise self.fail_stop
        return self.measurement


def test_window_fields_energy_per_image():
    with PowerWindow(FakeSampler()) as window:
        pass
    # 2 J over 50 iterations of batch 8: 2000 mJ / 400 images = 5 mJ per image.
    assert window.fields(iters=50, batch_size=8) == {
        "power_w": 10.0, "energy_mj_per_image": 5.0, "power_source": "fake sensor", "power_mode": "MAXN",
        "power_samples": 40, "power_reason": None,
    }  # fmt: skip


def test_window_turns_failures_into_reasons():
    with PowerWindow(FakeSampler(fail_start=RuntimeError("boom"))) as window:
        pass
    fields = window.fields(10, 1)
    assert fields["power_w"] is None and fields["power_reason"] == "fake sensor failed: RuntimeError: boom"

    with PowerWindow(FakeSampler(fail_stop=PowerSamplingError("tegrastats: no reading"))) as window:
        pass
    assert window.fields(10, 1)["power_reason"] == "tegrastats: no reading"

    with PowerWindow(None, "no power sensor: here") as window:
        pass
    assert window.fields(10, 1) == {**dict.fromkeys(POWER_FIELDS), "power_reason": "no power sensor: here"}


def test_window_stops_the_sensor_when_the_timed_calls_fail():
    sampler = FakeSampler()
    with pytest.raises(KeyError):
        with PowerWindow(sampler):
            raise KeyError("backend failed")
    assert sampler.log == ["start", "stop"]


def test_window_too_short_says_how_many_iterations():
    short = PowerMeasurement(10.0, 0.5, 2, 0.05, "tegrastats VDD_IN")
    with PowerWindow(FakeSampler(measurement=short)) as window:
        pass
    fields = window.fields(iters=20, batch_size=1)
    assert fields["power_w"] is None and fields["energy_mj_per_image"] is None
    assert "0.05 s timed window is too short" in fields["power_reason"]
    assert "--iters to 200" in fields["power_reason"]  # 20 iterations * 0.5 s / 0.05 s


def test_measure_latency_keeps_the_warmup_outside_the_power_window():
    log = []

    def run(batch):
        log.append("run")
        return batch

    stats = measure_latency(run, np.zeros((4, 3, 8, 8), np.float32), warmup=2, iters=3, power_sampler=FakeSampler(log))
    assert log == ["run", "run", "start", "run", "run", "run", "stop"]
    assert stats.power_w == 10.0 and stats.energy_mj_per_image == pytest.approx(2000.0 / (3 * 4))
    assert stats.power_source == "fake sensor" and stats.power_mode == "MAXN" and stats.power_reason is None


# -- samplers with faked sensors ---------------------------------------------------------------------------


def start_and_wait(sampler, readings: int = 2, timeout_s: float = 20.0) -> None:
    """Start ``sampler`` and wait until ``readings`` more have come in, all inside the window."""
    sampler.start()
    # Counted after start() returned: whatever arrives from here on is stamped after the window opened.
    count = sampler.sample_count + readings
    deadline = time.monotonic() + timeout_s
    while sampler.sample_count < count:
        assert time.monotonic() < deadline, f"the sampler thread gave {sampler.sample_count} readings"
        time.sleep(0.005)


def repeating(line: str):
    def lines():
        while True:
            yield line + "\n"
            time.sleep(0.005)

    return lines


@pytest.fixture
def power_mode(monkeypatch):
    monkeypatch.setattr(rails_mod, "jetson_power_mode", lambda: "15W")


AGX_ORIN_SOURCE = (
    "tegrastats VDD_GPU_SOC+VDD_CPU_CV+VIN_SYS_5V0 (AGX Orin module rails summed: no VDD_IN sensor; "
    "carrier board not included)"
)


@pytest.mark.parametrize(
    "line, watts, source", [(ORIN_NANO_JP6, 5.103, "tegrastats VDD_IN"), (AGX_ORIN_JP6, 8.2, AGX_ORIN_SOURCE)]
)
def test_tegrastats_sampler_on_a_line_source(power_mode, line, watts, source):
    sampler = TegrastatsSampler(lines=repeating(line))
    for _ in range(2):  # reusable: one start/stop per batch size
        start_and_wait(sampler)
        result = sampler.stop()
        assert result.mean_w == pytest.approx(watts)
        assert result.energy_j == pytest.approx(watts * result.seconds)
        assert result.samples >= 2 and result.source == source and result.power_mode == "15W"


def test_tegrastats_sampler_names_the_rails_it_saw(power_mode):
    sampler = TegrastatsSampler(lines=repeating(ORIN_NANO_NO_VDD_IN))
    sampler.startup_timeout_s = 0.3
    with pytest.raises(PowerSamplingError, match="rails seen: VDD_CPU_GPU_CV, VDD_SOC"):
        sampler.start()


def write_fake_tegrastats(folder: Path, body: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "tegrastats"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


@pytest.fixture
def no_sensor(monkeypatch, tmp_path):
    """A machine with nothing: no Jetson release file, no tegrastats, no pynvml, no jtop."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.setattr(jetson_mod, "ROOT", tmp_path)  # no L4T release file, no device-tree model
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import now raises ImportError
    monkeypatch.setitem(sys.modules, "jtop", None)
    return empty


@pytest.mark.skipif(sys.platform == "win32", reason="a POSIX shell script plays tegrastats")
def test_tegrastats_subprocess_is_started_and_terminated(monkeypatch, tmp_path, power_mode):
    fake_bin = tmp_path / "bin"
    write_fake_tegrastats(fake_bin, f'while true; do echo "{ORIN_NANO_JP6}"; sleep 0.02; done')
    monkeypatch.setenv("PATH", f"{fake_bin}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(jetson_mod, "ROOT", tmp_path)  # a container with tegrastats mounted, no release file
    sampler, reason = pick_power_sampler()
    assert isinstance(sampler, TegrastatsSampler) and reason is None
    start_and_wait(sampler)
    pid = sampler._process.pid
    result = sampler.stop()
    assert result.mean_w == pytest.approx(5.103) and result.source == "tegrastats VDD_IN"
    assert sampler._process is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # terminated and reaped


@pytest.mark.skipif(sys.platform == "win32", reason="a POSIX shell script plays tegrastats")
def test_a_failing_tegrastats_becomes_the_reason(no_sensor, power_mode):
    write_fake_tegrastats(no_sensor, 'echo "tegrastats: permission denied"; exit 1')
    sampler, _ = pick_power_sampler()
    with PowerWindow(sampler) as window:
        pass
    reason = window.fields(10, 1)["power_reason"]
    assert "no reading" in reason and "permission denied" in reason


class FakeNvmlError(Exception):
    """pynvml's NVMLError: a code, printed as NVML's own words."""

    WORDS = {3: "Not Supported", 4: "Insufficient Permissions", 6: "Not Found"}

    def __init__(self, value):
        super().__init__(value)
        self.value = value

    def __str__(self):
        return self.WORDS[self.value]


@dataclass
class NvmlBoard:
    bus_id: str  # NVML's form: an 8-digit domain
    uuid: str
    milliwatts: int
    energy_mj: list | None = None  # the counter's successive readings; None: NVML_ERROR_NOT_SUPPORTED


def _bus(text: str) -> tuple[int, ...]:
    # NVML accepts domain:bus:device.function in hexadecimal with any number of digits per field.
    domain, bus, rest = text.split(":")
    device, function = rest.split(".")
    return tuple(int(part, 16) for part in (domain, bus, device, function))


class FakeNvml:
    """The parts of pynvml the sampler uses, over boards in NVML's own (PCI) order; init/shutdown must balance.

    Handles come only by PCI bus id or UUID, as the sampler asks for them; by index they come in NVML's
    order, which is not CUDA's, so a sampler that asked by CUDA ordinal would read the wrong board.
    """

    def __init__(self, boards, init_error=None, bus_error=None):
        self.boards = sorted(boards, key=lambda board: _bus(board.bus_id))
        self.init_error, self.bus_error, self.open = init_error, bus_error, 0
        self.energy = {id(board): iter(board.energy_mj or ()) for board in self.boards}

    def nvmlInit(self):
        if self.init_error:
            raise self.init_error
        self.open += 1

    def nvmlShutdown(self):
        self.open -= 1

    def nvmlDeviceGetCount(self):
        return len(self.boards)

    def nvmlDeviceGetHandleByIndex(self, index):
        return self.boards[index]

    def nvmlDeviceGetHandleByPciBusId(self, bus_id):
        if self.bus_error is not None:
            raise FakeNvmlError(self.bus_error)
        found = [board for board in self.boards if _bus(board.bus_id) == _bus(bus_id)]
        if not found:
            raise FakeNvmlError(6)
        return found[0]

    def nvmlDeviceGetHandleByUUID(self, uuid):
        found = [board for board in self.boards if board.uuid == uuid]
        if not found:
            raise FakeNvmlError(6)
        return found[0]

    def nvmlDeviceGetPowerUsage(self, board):
        return board.milliwatts

    def nvmlDeviceGetTotalEnergyConsumption(self, board):
        if board.energy_mj is None:
            raise FakeNvmlError(3)
        return next(self.energy[id(board)])


# Two boards in PCI order: NVML's GPU 0 is the H100, GPU 1 the A2000.
H100_BOARD = NvmlBoard("00000000:3B:00.0", gpu_mod.uuid_text(H100.uuid), 300_000)
A2000_BOARD = NvmlBoard("00000000:AF:00.0", gpu_mod.uuid_text(A2000.uuid), 70_000)


@pytest.fixture
def cuda(monkeypatch):
    """``cuda(devices)`` makes the CUDA driver report those GPUs (CUDA_VISIBLE_DEVICES applies)."""
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    gpu_mod._probe.cache_clear()
    yield lambda devices: monkeypatch.setattr(gpu_mod, "_load_driver", lambda: FakeDriver(devices))
    gpu_mod._probe.cache_clear()


def a2000_info(index: int = 1) -> GpuInfo:
    return GpuInfo(index, A2000.name, "8.6", None, False, "12.6", "0000:AF:00.0", A2000_BOARD.uuid)


def test_nvml_energy_counter_difference():
    board = NvmlBoard(A2000_BOARD.bus_id, A2000_BOARD.uuid, 70_000, energy_mj=[1000, 3500])
    nvml = FakeNvml([H100_BOARD, board])
    sampler = NvmlSampler(a2000_info(), nvml=nvml)
    sampler.start()
    result = sampler.stop()
    assert result.energy_j == pytest.approx(2.5)  # (3500 - 1000) mJ
    assert result.mean_w == pytest.approx(2.5 / result.seconds)
    assert result.source == "NVML board energy counter, GPU 1 (PCI 0000:AF:00.0)" and result.power_mode is None
    assert nvml.open == 0


def test_nvml_without_a_counter_integrates_sampled_power():
    nvml = FakeNvml([H100_BOARD, A2000_BOARD])
    sampler = NvmlSampler(a2000_info(0), nvml=nvml)
    start_and_wait(sampler)
    result = sampler.stop()
    assert result.mean_w == pytest.approx(70.0) and result.energy_j == pytest.approx(70.0 * result.seconds)
    assert result.source == "NVML board power, GPU 0 (PCI 0000:AF:00.0)" and result.samples >= 2
    assert nvml.open == 0


@pytest.mark.parametrize("visible", ["1", "1,0"])
def test_nvml_reads_the_board_cuda_runs_on_not_nvmls_gpu_of_that_number(no_sensor, cuda, monkeypatch, visible):
    # CUDA_VISIBLE_DEVICES makes the A2000 CUDA's GPU 0; NVML ignores it and calls the H100 GPU 0.
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    cuda([H100, A2000])
    nvml = FakeNvml([H100_BOARD, A2000_BOARD])
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    sampler, reason = pick_power_sampler(0)
    assert reason is None and sampler.device_index == 0
    assert sampler.source == "NVML board power, GPU 0 (PCI 0000:AF:00.0)"
    start_and_wait(sampler)
    assert sampler.stop().mean_w == pytest.approx(70.0)  # the A2000's 70 W, not the H100's 300 W
    assert nvml.open == 0


def test_nvml_falls_back_to_the_uuid_when_the_bus_id_lookup_fails(no_sensor, cuda, monkeypatch):
    cuda([A2000, H100])  # CUDA's order (fastest first, say) is not NVML's either
    nvml = FakeNvml([H100_BOARD, A2000_BOARD], bus_error=4)
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    sampler, reason = pick_power_sampler(1)
    assert reason is None
    start_and_wait(sampler)
    assert sampler.stop().mean_w == pytest.approx(300.0)  # CUDA's GPU 1 is the H100
    assert nvml.open == 0


def test_nvml_without_the_cuda_gpu_says_why(no_sensor, cuda, monkeypatch):
    cuda([H100, A2000])
    nvml = FakeNvml([H100_BOARD])  # NVML cannot see the A2000 (another container's device list, say)
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    sampler, reason = pick_power_sampler(1)
    assert sampler is None and nvml.open == 0
    assert (
        "NVML has no GPU matching CUDA GPU 1 (NVIDIA RTX A2000 12GB): by PCI bus id 0000:AF:00.0: Not Found; "
        "by UUID: Not Found"
    ) in reason
    # The sampler itself refuses the same way when its board goes missing between detect and start.
    with pytest.raises(PowerSamplingError, match="NVML has no GPU matching CUDA GPU 1"):
        NvmlSampler(a2000_info(), nvml=nvml).start()
    assert nvml.open == 0


def test_nvml_without_a_board_identity_says_why(no_sensor, cuda, monkeypatch):
    cuda([FakeDevice("NVIDIA T4", 7, 5)])  # a driver that reports neither PCI bus id nor UUID
    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml([H100_BOARD]))
    sampler, reason = pick_power_sampler(0)
    assert sampler is None and "reports neither a PCI bus id nor a UUID for GPU 0 (NVIDIA T4)" in reason


def test_jtop_sampler_with_a_fake_service(power_mode):
    class FakeJtop:
        def __init__(self, interval):
            self.closed = False

        def start(self):
            pass

        def ok(self):
            time.sleep(0.005)
            return not self.closed

        def close(self):
            self.closed = True

        @property
        def power(self):
            return {"rail": {"VDD_SOC": {"power": 1513}}, "tot": {"power": 5103, "name": "VDD_IN"}}

    sampler = JtopSampler(module=types.SimpleNamespace(jtop=FakeJtop))
    start_and_wait(sampler)
    result = sampler.stop()
    assert result.mean_w == pytest.approx(5.103) and result.source == "jtop VDD_IN" and result.power_mode == "15W"


# -- which sensor ------------------------------------------------------------------------------------------


def test_pick_without_any_sensor(no_sensor):
    sampler, reason = pick_power_sampler()
    assert sampler is None
    assert reason.startswith("no power sensor: not a Jetson") and "nvidia-ml-py" in reason


def test_pick_on_a_jetson_without_tegrastats(no_sensor, tmp_path, monkeypatch):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "nv_tegra_release").write_text("# R36 (release), REVISION: 4.0\n")
    sampler, reason = pick_power_sampler()
    assert sampler is None and "tegrastats is not on PATH" in reason
    monkeypatch.setitem(sys.modules, "jtop", types.SimpleNamespace(jtop=object))
    sampler, reason = pick_power_sampler()
    assert isinstance(sampler, JtopSampler) and reason is None


def test_pick_nvml(no_sensor, cuda, monkeypatch):
    cuda([H100, A2000])
    nvml = FakeNvml([H100_BOARD, A2000_BOARD])
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    sampler, reason = pick_power_sampler(1)
    assert isinstance(sampler, NvmlSampler) and sampler.device_index == 1 and reason is None
    assert sampler.gpu.pci_bus_id == "0000:AF:00.0"
    assert nvml.open == 0  # the check shut NVML down again
    assert "there is no CUDA GPU 2: this machine has 2 GPUs" in pick_power_sampler(2)[1]
    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml([], init_error=RuntimeError("NVML Shared Library Not Found")))
    sampler, reason = pick_power_sampler()
    assert sampler is None and "NVML does not start (NVML Shared Library Not Found)" in reason


def test_nvml_is_not_used_for_a_cpu_backend(no_sensor, cuda, monkeypatch):
    cuda([H100, A2000])
    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml([H100_BOARD, A2000_BOARD]))
    cpu = types.SimpleNamespace(name="onnxruntime", device_index=None)
    sampler, reason = power_sampler_for(cpu)
    assert sampler is None and "runs on the CPU" in reason
    sampler, reason = power_sampler_for(types.SimpleNamespace(name="tensorrt", device_index=1))
    assert isinstance(sampler, NvmlSampler) and sampler.device_index == 1


def test_jetson_power_mode_from_the_system_module(monkeypatch):
    monkeypatch.setitem(sys.modules, "clca_deploy.system.jetson", types.SimpleNamespace(read_power_mode=lambda: "MAXN"))
    assert rails_mod.jetson_power_mode() == "MAXN"

    def broken():
        raise OSError("nvpmodel not found")

    monkeypatch.setitem(sys.modules, "clca_deploy.system.jetson", types.SimpleNamespace(read_power_mode=broken))
    assert rails_mod.jetson_power_mode() is None


# -- in the bench report ------------------------------------------------------------------------------------


class CpuBackend:
    """Just what bench's latency step asks of a backend: an onnxruntime one on the CPU."""

    name = "onnxruntime"
    providers = ("CPUExecutionProvider",)
    device_index = None

    def __init__(self):
        from clca_deploy.runtime.base import InputSpec

        self.input_spec = InputSpec("input", 8, None)

    def __call__(self, batch):
        return batch.sum(axis=(1, 2, 3))


def test_bench_json_has_null_power_with_a_reason_here(no_sensor, tmp_path):
    from clca_deploy.bench.report import BackendResult, BenchReport, load_report
    from clca_deploy.bench.run import BenchConfig, _latency

    images = np.zeros((3, 3, 8, 8), np.float32)
    config = BenchConfig(models=(), data=tmp_path, batch_sizes=(1, 4), warmup=1, iters=2, progress=False)
    stats, notes = _latency(CpuBackend(), images, config)
    assert set(stats) == {1, 4} and not notes
    result = BackendResult("ort", "onnxruntime", "m.onnx", "fp32", (0.7,), "ok", latency=stats)
    report = BenchReport((result,), {"labelled": False}, (), {"iters": 2, "warmup": 1}, {}, "2025-01-01T00:00:00+00:00")
    raw = json.loads(report.write_json(tmp_path / "r.json").read_text())
    nulls = ("power_w", "energy_mj_per_image", "power_source", "power_mode", "power_samples")
    for entry in raw["results"][0]["latency"].values():
        assert {name: entry[name] for name in nulls} == dict.fromkeys(nulls)
        assert entry["power_reason"].startswith("no power sensor: not a Jetson")
    assert load_report(tmp_path / "r.json") == report

    disabled, _ = _latency(CpuBackend(), images, BenchConfig(models=(), data=tmp_path, iters=2, power=False))
    assert disabled[1].power_reason == "not measured: power disabled"


def test_latency_stats_power_round_trip():
    stats = LatencyStats(1, 3, (1.0, 2.0), power_w=np.float32(12.5), energy_mj_per_image=np.float64(18.75),
                         power_source="tegrastats VDD_IN", power_mode="MAXN", power_samples=np.int64(40))  # fmt: skip
    assert type(stats.power_w) is float and type(stats.power_samples) is int
    assert LatencyStats.from_dict(json.loads(json.dumps(stats.to_dict()))) == stats
