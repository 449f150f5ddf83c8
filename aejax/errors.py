"""The errors users see for bad input: each says what is wrong and what to do."""


class ConfigError(ValueError):
    """A config value that cannot work; names the key."""

    def __init__(self, key: str, message: str):
        self.key = key
        super().__init__(f"{key}: {message}")


class RunDirTaken(ConfigError):
    """The run directory belongs to another run (in use, or holding a run not resumed): nothing in it
    was changed, and a sweep's job does not record a failure there."""


class DataError(RuntimeError):
    """Data that cannot be had or trusted (missing offline, corrupt, unreachable); says how to get it."""


class RunError(RuntimeError):
    """The run cannot go on (a checkpoint cannot be written or read); says what is kept."""


# Exit codes of aejax-train (docs/bad-input.md): 0 finished, 1 unexpected error
EXIT_CONFIG, EXIT_DATA, EXIT_RUN, EXIT_DIVERGED = 2, 3, 4, 5
