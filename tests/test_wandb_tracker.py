"""The W&B sink: choosing online or offline, and falling back when the server cannot be reached."""
import logging
import os
import socket

import pytest
import wandb
from omegaconf import OmegaConf

from aejax.config import LoggerConfig
from aejax.tracking.wandb_file import read_run
from aejax.tracking.wandb_tracker import WandbTracker, resolve_mode


@pytest.fixture
def no_account(monkeypatch, tmp_path):
    for var in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.netrc
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "home" / ".config" / "wandb"))
    return monkeypatch


def test_auto_mode_follows_the_credentials(no_account, tmp_path):
    assert resolve_mode("auto") == "offline"
    (tmp_path / "home").mkdir()
    netrc = tmp_path / "home" / ".netrc"
    netrc.write_text("machine api.wandb.ai login user password " + "k" * 40 + "\n")
    netrc.chmod(0o600)  # as `wandb login` writes it; Python refuses a world-readable netrc
    assert resolve_mode("auto") == "online"
    no_account.setenv("WANDB_MODE", "disabled")
    assert resolve_mode("auto") == "disabled"
    assert resolve_mode("offline") == "offline"  # an explicit mode is kept


def _unreachable_server(no_account):
    with socket.socket() as s:  # a port on 127.0.0.1 that nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    no_account.setenv("WANDB_API_KEY", "k" * 40)
    no_account.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{port}")


def _online_attempt_logs(tmp_path) -> tuple[str, str]:
    """W&B's own logs of the online attempt (``wandb/run-*``, not ``offline-run-*``): debug.log
    (the SDK) and debug-internal.log (the service that talks to the server)."""
    (folder,) = (tmp_path / "wandb").glob("run-*")
    return tuple((folder / "logs" / name).read_text() for name in ("debug.log", "debug-internal.log"))


def test_auto_falls_back_to_offline_within_the_timeout(no_account, tmp_path, caplog):
    _unreachable_server(no_account)
    cfg = OmegaConf.structured(LoggerConfig(mode="auto", init_timeout=3, name="fallback"))
    with caplog.at_level(logging.WARNING):
        tracker = WandbTracker(cfg, tmp_path, {"model": {"latent_dim": 4}})
    assert tracker.mode == "offline" and "logging offline instead" in caplog.text
    # the online attempt waited logger.init_timeout, and only on the server it was given
    sdk, service = _online_attempt_logs(tmp_path)
    assert "communicating run to backend with 3.0 second timeout" in sdk
    assert "connection refused" in service and os.environ["WANDB_BASE_URL"] in service
    tracker.log({"step": 1, "epoch": 1, "train/loss": 0.25})
    tracker.finish("finished")
    wandb.teardown()  # flushes the .wandb file before it is read
    run = read_run(tmp_path)
    assert run.name == "fallback" and run.config["model"]["latent_dim"] == 4
    assert [h["train/loss"] for h in run.history] == [0.25] and run.summary["status"] == "finished"


def test_explicit_online_does_not_silently_go_offline(no_account, tmp_path):
    _unreachable_server(no_account)
    cfg = OmegaConf.structured(LoggerConfig(mode="online", init_timeout=2))
    with pytest.raises(wandb.errors.CommError, match="(?s)connection refused.*init_timeout"):
        WandbTracker(cfg, tmp_path, {})
    wandb.teardown()
    assert not list((tmp_path / "wandb").glob("offline-run-*"))  # no offline run behind the user's back
    sdk, _ = _online_attempt_logs(tmp_path)
    assert "communicating run to backend with 2.0 second timeout" in sdk
