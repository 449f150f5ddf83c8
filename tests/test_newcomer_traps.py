"""The traps a newcomer met on a first hour: `-m ... --cfg job` (Hydra refuses the pair with a
traceback), the console's lines (placement, noise, units)."""
import yaml
from conftest import run_cli


def test_multirun_cfg_job_prints_each_jobs_config_and_runs_nothing(tmp_path):
    out = run_cli("-m", "model.latent_dim=2,4", "variant=vanilla,vae", "--cfg", "job", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    jobs = out.stdout.split("# job ")[1:]
    heads = [job.splitlines()[0] for job in jobs]
    assert heads == ["0 of 4: model.latent_dim=2 variant=vanilla", "1 of 4: model.latent_dim=2 variant=vae",
                     "2 of 4: model.latent_dim=4 variant=vanilla", "3 of 4: model.latent_dim=4 variant=vae"]
    configs = [yaml.safe_load(job.split("\n", 1)[1]) for job in jobs]
    assert [(c["model"]["latent_dim"], c["variant"]["name"], c["variant"]["recon"]) for c in configs] == [
        (2, "vanilla", "mse"), (2, "vae", "bce"), (4, "vanilla", "mse"), (4, "vae", "bce")]
    assert all("hydra" not in c for c in configs)
    assert list(tmp_path.iterdir()) == []  # no multirun/ folder, nothing trained
    # a preset's own sweep (hydra.sweeper.params) counts, as in the multirun itself
    preset = run_cli("-m", "+experiment=first_principles_digits", "--cfg", "job", cwd=tmp_path)
    assert preset.returncode == 0 and preset.stdout.count("# job ") == 5
    bad = run_cli("-m", "model.latent_dim=2,4", "nosuchgroup=x", "--cfg", "job", cwd=tmp_path)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "nosuchgroup" in bad.stderr
