"""Validating what `/train` was given: the model name and every training image."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from bot.config import LimitsSettings
from bot.errors import UserFacingError
from bot.images import CheckedImage, check_image
from bot.training.archive import ArchiveLimits, read_archive

NAME_MIN = 2
NAME_MAX = 40
_NAME = re.compile(r"[^\W_]|[\d _-]")  # letters (any script), digits, space, '_' and '-'


@dataclass
class TrainingImages:
    """Images accepted for a training, and the archive members skipped as non-images."""

    images: list[CheckedImage] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def check_model_name(name: str, taken: Iterable[str]) -> str:
    """Return the cleaned name if it is well-formed and not used in the guild yet."""
    cleaned = " ".join(name.split())
    if not NAME_MIN <= len(cleaned) <= NAME_MAX:
        raise UserFacingError("train.name_length", min=NAME_MIN, max=NAME_MAX)
    if not all(_NAME.fullmatch(ch) for ch in cleaned):
        raise UserFacingError("train.name_chars")
    if cleaned.casefold() in {t.casefold() for t in taken}:
        raise UserFacingError("train.name_taken", name=cleaned)
    return cleaned


def parse_dataset_ids(text: str | None) -> list[int]:
    """'3, 7' -> [3, 7]; raise on anything that is not a positive integer."""
    if not text or not text.strip():
        return []
    ids: list[int] = []
    for part in text.split(","):
        part = part.strip()
        # ASCII digits only: str.isdigit() also accepts '¹' or '٣', which int() rejects.
        if not (part.isascii() and part.isdigit()) or int(part) <= 0:
            raise UserFacingError("train.bad_dataset_ids", value=part[:20])
        if int(part) not in ids:
            ids.append(int(part))
    return ids


def check_uploads(
    uploads: Iterable[tuple[str, bytes]], limits: LimitsSettings
) -> list[CheckedImage]:
    """Check attachment images exactly as /img2img does."""
    return [
        check_image(
            data, name, max_bytes=limits.attachment_bytes, max_pixels=limits.attachment_pixels
        )
        for name, data in uploads
    ]


def check_archive(data: bytes, limits: LimitsSettings) -> TrainingImages:
    """Read a ZIP archive safely; keep its images, skip (and name) its other files."""
    bounds = ArchiveLimits(limits.archive_files, limits.archive_bytes, limits.archive_file_bytes)
    result = TrainingImages()
    for name, content in read_archive(data, bounds).files:
        try:
            image = check_image(
                content,
                name.rsplit("/", 1)[-1],
                max_bytes=limits.attachment_bytes,
                max_pixels=limits.attachment_pixels,
            )
        except UserFacingError as exc:
            if exc.key != "image.bad_type":
                raise
            result.skipped.append(name[:80])
            continue
        result.images.append(image)
    return result


def require_enough(count: int, has_datasets: bool, limits: LimitsSettings) -> None:
    """A training needs images or existing datasets; new images at least the minimum."""
    if count == 0 and not has_datasets:
        raise UserFacingError("train.no_images", count=limits.training_images_min)
    if count and count < limits.training_images_min:
        raise UserFacingError("train.too_few_images", count=count, min=limits.training_images_min)
