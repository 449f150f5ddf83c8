"""The one error users see for bad input: it names the config key and says what to change."""


class ConfigError(ValueError):
    def __init__(self, key: str, message: str):
        self.key = key
        super().__init__(f"{key}: {message}")
