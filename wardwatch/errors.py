"""One root exception; everything wardwatch raises on purpose derives from it."""


class WardwatchError(Exception):
    """Root of wardwatch's exceptions."""


class ConfigError(WardwatchError):
    """Settings are inconsistent or a required service is not configured."""


class StackError(WardwatchError):
    """An embedded service (broker, Redis) failed to start or stop."""


class ModelError(WardwatchError):
    """A model file is missing, corrupt, or fails its checks."""
