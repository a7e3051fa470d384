"""The XLA flags the commands (and the tests) run under: `jaxart.backend.xla_flags`."""

import json
import os
import subprocess
import sys

import pytest

from jaxart import backend

YNN = f"--{backend.CPU_FUSION_FLAG}={backend.CPU_FUSION_TYPES}"


def test_flags_added_where_absent():
    flags = backend.xla_flags("--xla_force_host_platform_device_count=4", "0.10.2", own_convolutions=True).split()
    assert flags == ["--xla_force_host_platform_device_count=4", "--xla_gpu_deterministic_ops=true", YNN]
    assert backend.xla_flags(" ".join(flags), "0.10.2", own_convolutions=True).split() == flags


def test_own_convolutions_only_where_asked():
    """The style and GAN jobs keep XLA's default convolutions (see `jaxart.backend`)."""
    assert backend.xla_flags("", "0.10.2") == "--xla_gpu_deterministic_ops=true"


def test_a_users_own_setting_wins():
    mine = f"--{backend.CPU_FUSION_FLAG}=LIBRARY_FUSION_TYPE_DOT --xla_gpu_deterministic_ops=false"
    assert backend.xla_flags(mine, "0.10.2", own_convolutions=True) == mine


@pytest.mark.parametrize("version", ["0.11.0", "0.9.2", "1.10.0"])
def test_the_experimental_flag_only_for_the_jaxlib_it_was_measured_on(version):
    # XLA aborts the process on a flag it does not know.
    assert backend.CPU_FUSION_FLAG not in backend.xla_flags("", version, own_convolutions=True)


COMPILED = """
import json, jax, jax.numpy as jnp
from jaxart import backend
backend.set_xla_flags(own_convolutions=True)
x, k = jnp.ones((1, 34, 34, 32)), jnp.ones((3, 3, 32, 32))  # a size YNNPACK takes by default
conv = jax.jit(lambda x, k: jax.lax.conv_general_dilated(x, k, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")))
dot = jax.jit(lambda a, b: a @ b)
print(json.dumps([conv.lower(x, k).compile().as_text(), dot.lower(x[0, 0], k[0, 0]).compile().as_text()]))
"""


@pytest.mark.cpu_only
def test_convolutions_leave_ynnpack_and_dots_stay():
    """Under the flags, XLA compiles a convolution to its own (no YNNPACK fusion) and a dot to YNNPACK's."""
    env = {**os.environ, "XLA_FLAGS": ""}  # not the flags this process was given
    out = subprocess.run(
        [sys.executable, "-c", COMPILED], env=env, capture_output=True, text=True, timeout=300, check=True
    )
    conv, dot = json.loads(out.stdout.splitlines()[-1])
    assert "convolution(" in conv and "__ynn_fusion" not in conv
    assert "__ynn_fusion" in dot
