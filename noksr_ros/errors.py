"""Exception types of noksr_ros: one base class so callers can catch everything of ours."""


class NoksrError(Exception):
    """Base class of every error raised on purpose by noksr_ros."""


class ConfigError(NoksrError, ValueError):
    """A configuration key or value is invalid; the message names the key and the valid values."""


class PointCloudError(NoksrError, ValueError):
    """A PointCloud2 message cannot be decoded (bad fields, sizes or data)."""


class BagError(NoksrError):
    """A bag cannot be read as a drive (missing or ambiguous topics, no poses, bad file)."""


class StoreError(NoksrError):
    """The segment store on disk is unreadable, tampered with or unwritable."""


class CheckpointError(NoksrError):
    """A model checkpoint is missing, corrupt or does not match the model configuration."""


class InferenceMemoryError(NoksrError):
    """
    A segment did not fit in memory.

    Its forward pass in the smallest pieces on any device, or the numpy work around it (normals,
    corners, trimming field).
    """
