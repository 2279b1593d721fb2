"""Error types the CLI and service turn into clear messages.

Every error the user can cause (bad image, bad data folder, bad model directory, bad option)
derives from :class:`EagleError`, so callers can show its message without a traceback while
genuine bugs still surface as ordinary exceptions.
"""

from collections.abc import Iterable


def one_of(choices: Iterable[str]) -> str:
    """``choices`` as a refusal lists them, each quoted as Python writes a string (``',', ';', '\\t'``): a choice
    that is punctuation or whitespace stays readable, and every refusal lists its choices alike (a station
    option's, a part's ``kind``, a preset, an exposure, a registry's names), so a message reads the same wherever
    the choice was made."""
    return ", ".join(repr(choice) for choice in choices)


class EagleError(Exception):
    """A problem the user can fix; the message says what and where."""


def remote_cause(exc: BaseException) -> BaseException:
    """The user's error that a Ray task raised, as this process would have raised it; ``exc`` otherwise.

    Ray wraps a task's exception in a ``RayTaskError`` that is also an instance of the original class, so
    ``except EagleError`` catches it, but its text is the remote traceback with colour codes: printed as
    ``eagle: error: ...`` it was one squashed line of escapes. The original, its ``cause``, carries the
    message alone. A bug (not an :class:`EagleError`) keeps Ray's error and its traceback.
    """
    cause = getattr(exc, "cause", None)
    if cause is not exc and isinstance(cause, EagleError) and type(exc).__module__.startswith("ray."):
        return cause
    return exc


class ImageError(EagleError):
    """An image file that cannot be used (missing, empty, corrupt, too large, odd format)."""


class ImageTooLargeError(ImageError):
    """An image whose header promises more pixels, or a thinner shape, than the limits allow.

    A separate type so the service can answer 413 (too large) rather than 400 (unreadable).
    """


class ImageTooElongatedError(ImageTooLargeError):
    """An image whose sides are too unequal (its aspect ratio over ``EAGLE_MAX_ASPECT``), however few its pixels.

    A subtype of :class:`ImageTooLargeError` (the service still answers 413, as before) with its own error code,
    ``image_too_elongated``: a 1000x20 strip is not "too large", and a console that heads the refusal by its
    code would otherwise call it so.
    """


class DataError(EagleError):
    """A dataset root, layout or category that does not hold what is needed."""


class ModelFormatError(EagleError):
    """A saved model directory that is missing, tampered with, or from another version."""


class BackboneUnavailableError(EagleError):
    """Backbone weights that are not present locally and cannot be downloaded."""


class HistoryUnavailableError(EagleError):
    """The history's database cannot be reached now (a server restarting, the network): retry later.

    Distinct from :class:`ConfigError` (a URL that can never work) so that a service answers 503, which
    clients retry, rather than 400; its message may name the server, so the service logs it and answers
    without it.
    """


class OutputError(EagleError):
    """An output location that cannot be written without destroying what is already there."""


class ConfigError(EagleError):
    """An option or configuration value outside what is supported."""


class FolderInUseError(ConfigError):
    """A hot folder another station (in this process or another, maybe on another host) takes the images of, or a
    camera's frames folder and name_prefix another camera saves frames under (or a hot folder on either)."""


class FolderFinishingError(FolderInUseError):
    """A hot folder still held by a station of this process that was stopped (deleted) and is finishing the image it
    had in hand past the shutdown grace: free once that image is done, so worth a retry in a few seconds (not
    "stop that one first": it is no longer there to stop)."""


class BackendError(EagleError):
    """An MLLM backend that cannot be reached or answers with an error."""
