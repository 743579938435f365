"""Validated training images kept on disk until they are uploaded, so uploads can resume."""

from __future__ import annotations

import asyncio
import logging
import shutil
from pathlib import Path

from bot.images import CheckedImage

log = logging.getLogger(__name__)

_EXTENSIONS = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp"}
_CONTENT_TYPES = {"png": "image/png", "jpg": "image/jpeg", "webp": "image/webp"}


class Staging:
    """One directory per training under `root`; file names are ours, never the uploader's."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def folder(self, training_id: int) -> Path:
        """The training's staging directory."""
        return self.root / str(int(training_id))

    async def write(self, training_id: int, images: list[CheckedImage]) -> list[str]:
        """Store the images and return their staged names in order."""
        return await asyncio.to_thread(self._write, training_id, images)

    async def read(self, training_id: int, names: list[str]) -> list[tuple[str, bytes, str]] | None:
        """(filename, data, content_type) of staged files; None when one is missing."""
        return await asyncio.to_thread(self._read, training_id, names)

    async def remove(self, training_id: int) -> None:
        """Delete the training's staged files."""
        await asyncio.to_thread(shutil.rmtree, self.folder(training_id), True)

    def _write(self, training_id: int, images: list[CheckedImage]) -> list[str]:
        folder = self.folder(training_id)
        folder.mkdir(parents=True, exist_ok=True)
        names = []
        for index, image in enumerate(images):
            name = f"{index:03d}.{_EXTENSIONS[image.format]}"
            (folder / name).write_bytes(image.data)
            names.append(name)
        return names

    def _read(self, training_id: int, names: list[str]) -> list[tuple[str, bytes, str]] | None:
        folder = self.folder(training_id)
        files = []
        for name in names:
            path = folder / Path(name).name  # stored names are bare; never follow a path
            try:
                data = path.read_bytes()
            except OSError:
                log.warning("staged file %s of training %s is gone", path.name, training_id)
                return None
            files.append((path.name, data, _CONTENT_TYPES.get(path.suffix[1:], "image/png")))
        return files
