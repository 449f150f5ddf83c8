"""Shared test setup: 8 virtual CPU devices, Hydra composition, and running the real CLI."""
from __future__ import annotations

import os

# Before JAX is imported anywhere: 8 CPU devices make the data-parallel tests real. The flag is
# added to an XLA_FLAGS the user already set (e.g. a dump folder), so that the 8-device tests
# still run; a device count the user chose is kept.
DEVICE_COUNT_FLAG = "--xla_force_host_platform_device_count"


def with_device_count(flags: str, count: int = 8) -> str:
    """``flags`` (an XLA_FLAGS value) with ``count`` host devices, unless it already sets a count."""
    if DEVICE_COUNT_FLAG in flags:
        return flags
    return f"{flags} {DEVICE_COUNT_FLAG}={count}".strip()


USER_XLA_FLAGS = os.environ.get("XLA_FLAGS", "")
os.environ["XLA_FLAGS"] = with_device_count(USER_XLA_FLAGS)
os.environ["WANDB_SILENT"] = "true"

import contextlib  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402

from aejax.cli import config_dir  # noqa: E402
from aejax.config import validate  # noqa: E402


def compose_config(*overrides: str, validated: bool = True):
    """The config ``aejax-train <overrides>`` would run, composed by Hydra from conf/."""
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose("config", overrides=list(overrides))
    return validate(cfg) if validated else cfg


def offline_env() -> dict[str, str]:
    """The environment of a user with no W&B account and no network."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(WANDB_SILENT="true", WANDB_MODE="offline")
    return env


def run_cli(*args: str, cwd: Path, command: tuple[str, ...] = (sys.executable, "-m", "aejax")):
    return subprocess.run([*command, *args], cwd=cwd, env=offline_env(), capture_output=True, text=True, timeout=300)


def checkpoint_arrays(run_dir: Path, step: int) -> list:
    """The leaves of a run's saved TrainState as numpy arrays, whatever devices or processes saved it."""
    import jax
    import numpy as np
    import orbax.checkpoint as ocp

    path = run_dir / "checkpoints" / str(step) / "state"
    checkpointer = ocp.PyTreeCheckpointer()
    tree = checkpointer.metadata(path).item_metadata.tree
    args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
    return jax.tree.leaves(checkpointer.restore(path, args=ocp.args.PyTreeRestore(restore_args=args)))


def assert_close_1e5(actual, reference) -> None:
    """Equal within 1e-5 relative, where values near zero (gradients) count within 1e-5 of the
    array's largest magnitude: the README's "within 1e-5" for devices and processes. Measured on
    CPU (8 virtual devices, two processes): z differs by <= 2.4e-7 relative, grad by <= 4.4e-9
    absolute with the largest gradient about 0.015, i.e. ~3e-7 of it."""
    import numpy as np

    reference = np.asarray(reference)
    np.testing.assert_allclose(actual, reference, rtol=1e-5, atol=1e-5 * float(np.abs(reference).max()))


@pytest.fixture
def composed():
    return compose_config


DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")  # Debian's dataset-fashion-mnist


@pytest.fixture(scope="session")
def prepared_fashion_mnist(tmp_path_factory, worker_id) -> Path:
    """A data dir with Fashion-MNIST prepared from Debian's files, shared by the xdist workers
    (``prepare`` takes a file lock, so the first worker builds it and the others wait)."""
    if not DEBIAN_FASHION_MNIST.is_dir():
        pytest.skip("needs Debian's dataset-fashion-mnist (installed by .ci/run)")
    from aejax.data import mnist_family

    root = tmp_path_factory.getbasetemp()
    data_dir = (root if worker_id == "master" else root.parent) / "mnist_family_data"
    mnist_family.prepare("fashion_mnist", data_dir=data_dir)
    return data_dir


@contextlib.contextmanager
def tmpfs(path: Path, size: str):
    """A small tmpfs at ``path`` (a disk that really fills up, or can be made read-only); the
    test is skipped where mounting is not allowed (it needs root with CAP_SYS_ADMIN)."""
    path.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN)")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


# The slow groups, by what they need (markers registered in pyproject.toml; docs/testing.md):
# -m "not browser", -m multiprocess, ...
def pytest_collection_modifyitems(items):
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if "browser" in fixtures:
            item.add_marker(pytest.mark.browser)
        if "prepared_fashion_mnist" in fixtures or item.module.__name__ == "test_mnist_family":
            item.add_marker(pytest.mark.dataset)
        if item.module.__name__ == "test_multihost":
            item.add_marker(pytest.mark.multiprocess)


@contextlib.contextmanager
def wandb_server_refusing_keys():
    """A W&B server on 127.0.0.1 that answers HTTP 401 ("invalid api key") to everything; yields its URL."""
    import http.server
    import threading

    class Refuse(http.server.BaseHTTPRequestHandler):
        def _deny(self):
            body = b'{"errors": [{"message": "invalid api key"}]}'
            self.send_response(401)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = _deny

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Refuse)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
