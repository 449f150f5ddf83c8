"""Sweeps as one compiled program (``hydra/launcher=aejax_batched``): the jobs of a multirun that
differ only in ``seed``, ``model.latent_dim``, scalar optimizer values, term weights and
corruption levels are trained together as vmapped models; each job keeps its own run directory, files, W&B run and summary.

- ``grouping.py``: which jobs can share a program (a job's signature) and how a group is split
  to fit the memory budget;
- ``padding.py``: how a model's parameters are padded to the group's largest code and cut back
  (a Gaussian head's mean and log-variance each in its own block);
- ``members.py``: the models of a group: their own initialisation, padding to the group's
  largest code, per-model optimizer values, and each model's own view of the stacked state;
- ``objective.py``: the objective's values carried per model (term weights and annealing,
  corruption levels, a padded VAE's code size) and the group's train step and validation program built from them;
- ``group.py``: one group from its jobs' configs to their run directories.

The launcher itself is ``hydra_plugins/aejax_launcher/batched.py``; docs/sweeps.md says which
jobs batch together and why others do not.
"""
