"""Why a study could not be loaded or pre-processed: one exception tree under
:class:`~wardwatch.errors.WardwatchError`, each class with the
:class:`~wardwatch.schemas.ImagingReason` its dead letter carries."""

from __future__ import annotations

from typing import ClassVar

from wardwatch.errors import WardwatchError
from wardwatch.schemas import ImagingReason


class ImagingError(WardwatchError):
    """A study that cannot be scored; ``reason`` is the dead letter's reason code and the
    message its detail (it names files and tags, never the patient)."""

    reason: ClassVar[ImagingReason] = ImagingReason.STUDY_UNREADABLE


class StudyUnreadable(ImagingError):
    """No DICOM file, a corrupt file, missing required tags, or undecodable pixel data."""

    reason = ImagingReason.STUDY_UNREADABLE


class StudyNotCT(ImagingError):
    """An instance of the series is not CT (its Modality)."""

    reason = ImagingReason.STUDY_NOT_CT


class StudyTruncated(ImagingError):
    """An instance holds less pixel data than its Rows, Columns and bits declare."""

    reason = ImagingReason.STUDY_TRUNCATED


class SeriesNotFound(ImagingError):
    """No instance of the announced SeriesInstanceUID where the URI points."""

    reason = ImagingReason.SERIES_NOT_FOUND


class SeriesInconsistent(ImagingError):
    """The slices do not make one volume: different sizes, spacings or orientations,
    duplicated positions, a tilted stack, or several series where one was expected."""

    reason = ImagingReason.SERIES_INCONSISTENT


class SeriesGap(SeriesInconsistent):
    """Two neighbouring slices further apart than the series' spacing allows (a missing
    slice)."""

    reason = ImagingReason.SERIES_GAP
