"""How `serve` words a server that did not start or stopped: one line, its real cause first, no noise."""

from __future__ import annotations

import signal

from clca_deploy.serving.watch import ServerStopped, ServerWatch, describe_exit, error_lines, start_failure

# Lines a server on a machine without a GPU wrote when a second `serve` lost the race for its gRPC port.
RACE_LOG = """\
I1206 20:46:23.318000 30416 pinned_memory_manager.cc:277] "Pinned memory pool is created"
E1206 20:46:23.319262 30416 server.cc:241] "CudaDriverHelper has not been initialized."
E1206 20:46:25.430857 30416 ensemble_scheduler.cc:1468] "unable to create stream for clca: CUDA driver version is insufficient for CUDA runtime version"
E1206 20:46:25.439456 30416 main.cc:245] "failed to start GRPC service: Unavailable - Socket '127.0.0.1:42098' already in use "
"""
RACE_CONSOLE = (
    "E1206 20:46:25.432068847   30416 chttp2_server.cc:1060]                UNKNOWN:No address added out of total 1 "
    "resolved for '127.0.0.1:42098' {created_time:\"2026-12-06T20:46:25.432018712+00:00\"}\nSignal (2) received.\n"
)
# What the bundled server printed when a gzip body inflating past 2 GiB aborted it.
CRASH_CONSOLE = """\
terminate called after throwing an instance of 'std::length_error'
  what():  vector::_M_default_append
Signal (6) received.
 0# 0x00005636E931E52D in /tmp/clca-serve-24465-ejzvpbft/pytriton/tritonserver/bin/tritonserver
 1# 0x00007F8FD465A050 in /lib/x86_64-linux-gnu/libc.so.6
I1206 20:40:19.929043 24577 pb_stub.cc:2145]  Non-graceful termination detected.
"""


def test_error_lines_drop_the_glog_prefix_and_keep_only_errors():
    assert error_lines(RACE_LOG) == [
        "CudaDriverHelper has not been initialized.",
        "unable to create stream for clca: CUDA driver version is insufficient for CUDA runtime version",
        "failed to start GRPC service: Unavailable - Socket '127.0.0.1:42098' already in use",
    ]
    assert error_lines(CRASH_CONSOLE) == []


def test_a_port_lost_at_start_is_named_first_without_cuda_noise():
    reason = start_failure(RACE_LOG, RACE_CONSOLE, fallback="TimeoutError")
    assert reason.startswith("failed to start GRPC service: Unavailable - Socket '127.0.0.1:42098' already in use")
    assert "--port" in reason and "CUDA" not in reason and "Cuda" not in reason and "\n" not in reason


def test_model_load_failures_are_the_cause_and_the_fallback_stays_last():
    log = (
        'E1206 10:00:00.000001 1 server.cc:241] "CudaDriverHelper has not been initialized."\n'
        "E1206 10:00:00.000002 1 model_lifecycle.cc:641] \"failed to load 'clca_classifier' version 1: Internal: "
        "ValueError: bad model\"\n"
        'E1206 10:00:00.000003 1 model_repository_manager.cc:703] "Invalid argument: ensemble clca contains models that are not available"\n'
    )
    assert start_failure(log, "", "x") == "failed to load 'clca_classifier' version 1: Internal: ValueError: bad model"
    other = 'E1206 10:00:00.000003 1 x.cc:1] "something else broke"\n'
    assert start_failure(other, "", "x") == "something else broke"
    assert start_failure("", "Signal (2) received.\n", fallback="TimeoutError: not ready") == "TimeoutError: not ready"


def test_describe_exit_names_the_signal_and_the_exception_not_the_backtrace():
    crashed = describe_exit(-signal.SIGABRT, CRASH_CONSOLE)
    assert crashed == "killed by SIGABRT, after an uncaught std::length_error (vector::_M_default_append)"
    killed = describe_exit(-signal.SIGKILL, "")
    assert killed.startswith("killed by SIGKILL") and "out-of-memory" in killed
    assert describe_exit(3, 'E1206 10:00:00.000003 1 x.cc:1] "boom"\n') == "exited with code 3; last error: boom"
    assert describe_exit(None, "") == "its process is gone"
    for text in (crashed, killed):
        assert "/" not in text and "\n" not in text


def test_server_stopped_is_a_one_line_error_with_its_own_exit_code():
    from clca_deploy.errors import ClcaDeployError

    assert issubclass(ServerStopped, ClcaDeployError) and ServerStopped.exit_code == 1


def test_the_watch_waits_while_the_server_lives_then_says_how_it_ended():
    class Command:
        class process:
            exit_code = -signal.SIGKILL

    class Process:
        _tritonserver_running_cmd = Command

        def logs(self):
            return "Signal (9) received.\n"

    class FakeTriton:
        checks = 0
        _triton_server = Process()

        def is_alive(self):
            self.checks += 1
            return self.checks < 3  # alive for two looks, then gone

    triton = FakeTriton()
    assert ServerWatch(triton).wait(poll_s=0.001).startswith("killed by SIGKILL")
    assert triton.checks == 3
