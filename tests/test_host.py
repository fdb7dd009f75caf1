"""Host facts read from a copied sysfs/procfs tree, and the measurement record built on them.

Each test writes the files a Raspberry Pi, a Jetson or an x86 host exposes under a temporary
root, so the readers run on this machine whatever it exposes itself.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from rnnedge.host import (
    clock_info,
    cpufreq_info,
    jetson_power_mode,
    jetson_release,
    raspberry_pi_throttled,
    thermal_throttle_count,
)
from rnnedge.profiling.fingerprint import jetson_info, throttling

PI_THROTTLED = "sys/devices/platform/soc/soc:firmware/get_throttled"
TEGRA_RELEASE = (
    "# R36 (release), REVISION: 4.3, GCID: 1, BOARD: generic, EABI: aarch64\n# KERNEL_VARIANT: oot"
)
NVPMODEL_CONF = "< POWER_MODEL ID=0 NAME=15W >\n< POWER_MODEL ID=2 NAME=MAXN_SUPER >\n"


def _write(root: Path, relative: str, text: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


def test_clock_info_reads_cpu0(tmp_path):
    for cpu, khz in ((0, 1500000), (1, 600000)):
        base = f"sys/devices/system/cpu/cpu{cpu}/cpufreq"
        _write(tmp_path, f"{base}/scaling_governor", "ondemand")
        _write(tmp_path, f"{base}/scaling_cur_freq", str(khz))
        _write(tmp_path, f"{base}/cpuinfo_max_freq", "2400000")
    assert clock_info(tmp_path) == {"governor": "ondemand", "current_mhz": 1500, "max_mhz": 2400}
    assert [cpu["current_mhz"] for cpu in cpufreq_info(tmp_path)] == [1500, 600]


def test_clock_info_without_cpufreq(tmp_path):
    assert clock_info(tmp_path) == {"governor": None, "current_mhz": None, "max_mhz": None}


@pytest.mark.parametrize(
    ("bits", "now", "since_boot", "throttled_now"),
    [
        ("0", [], [], False),
        ("50005", ["under-voltage", "throttled"], ["under-voltage", "throttled"], True),
        ("10001", ["under-voltage"], ["under-voltage"], False),
        ("80000", [], ["soft temperature limit"], False),
    ],
)
def test_pi_throttled_from_sysfs(tmp_path, bits, now, since_boot, throttled_now):
    _write(tmp_path, PI_THROTTLED, bits)
    flags = raspberry_pi_throttled(tmp_path)
    assert flags is not None
    assert flags["raw"] == hex(int(bits, 16))
    assert flags["now"] == now
    assert flags["since_boot"] == since_boot
    state = throttling(tmp_path)
    assert state is not None
    assert state["raspberry_pi_get_throttled"] == flags["raw"]
    assert state["throttled_now"] is throttled_now
    assert state["throttled_since_boot"] is bool(since_boot)


@pytest.mark.skipif(shutil.which("vcgencmd") is not None, reason="vcgencmd is the fallback")
def test_pi_throttled_absent(tmp_path):
    assert raspberry_pi_throttled(tmp_path) is None


def test_throttling_x86_counts_and_zone0(tmp_path):
    _write(tmp_path, "sys/devices/system/cpu/cpu0/thermal_throttle/core_throttle_count", "17")
    _write(tmp_path, "sys/class/thermal/thermal_zone0/temp", "61500")
    _write(tmp_path, "sys/class/thermal/thermal_zone1/temp", "90000")
    assert thermal_throttle_count(tmp_path) == 17
    state = throttling(tmp_path)
    assert state == {"cpu0_thermal_throttle_count": 17, "thermal_zone0_c": 61.5}


def test_throttling_nothing_readable(tmp_path):
    if shutil.which("vcgencmd") is not None:
        pytest.skip("vcgencmd reports this host's flags")
    assert throttling(tmp_path) is None


def test_jetson_release_parses_l4t(tmp_path):
    _write(tmp_path, "etc/nv_tegra_release", TEGRA_RELEASE)
    release = jetson_release(tmp_path)
    assert release == {"l4t_release": TEGRA_RELEASE.splitlines()[0], "l4t": "36.4.3"}


def test_jetson_release_absent(tmp_path):
    assert jetson_release(tmp_path) is None
    assert jetson_info(tmp_path) is None


@pytest.mark.skipif(shutil.which("nvpmodel") is not None, reason="nvpmodel is read first")
def test_jetson_power_mode_from_status(tmp_path):
    _write(tmp_path, "etc/nv_tegra_release", TEGRA_RELEASE)
    _write(tmp_path, "etc/nvpmodel.conf", NVPMODEL_CONF)
    _write(tmp_path, "var/lib/nvpmodel/status", "pmode:0000 fmode:quiet")
    mode = jetson_power_mode(tmp_path)
    assert mode is not None
    assert mode["id"] == 0
    assert mode["name"] == "15W"
    assert mode["max"] == {"id": 2, "name": "MAXN_SUPER"}
    info = jetson_info(tmp_path)
    assert info == {"l4t_release": TEGRA_RELEASE.splitlines()[0], "l4t": "36.4.3", "power_mode": 0}


@pytest.mark.skipif(shutil.which("nvpmodel") is not None, reason="nvpmodel is read first")
def test_jetson_power_mode_absent(tmp_path):
    _write(tmp_path, "etc/nvpmodel.conf", NVPMODEL_CONF)
    assert jetson_power_mode(tmp_path) is None
