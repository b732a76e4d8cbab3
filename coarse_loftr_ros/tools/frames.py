"""Frames of a recording written as numbered images: the input of teacher labelling.

A rosbag2 image topic (``sensor_msgs/Image`` or ``CompressedImage``) or a video file becomes a
folder ``000000.png, 000001.png, ...`` of grayscale frames in recording order, every
``every``-th frame, so that ``coarse_loftr_train.labels.video_pairs`` can pair frames ``k`` and
``k + s`` as it does for any folder of consecutive frames.
"""

from __future__ import annotations

from pathlib import Path

import cv2

from ..errors import CoarseLoftrError, ImageError
from ..ros.image_conversion import message_to_numpy
from .replay import ReplayConfig, open_source


def export_frames(source: Path, output: Path, image_topic: str | None = None, every: int = 1) -> int:
    """Write every ``every``-th image of ``source`` (a rosbag2 with ``image_topic``, or a video)
    to ``output`` as grayscale PNG; returns the number written. Undecodable messages are skipped
    (counted in the frame numbering as if absent); a folder that already holds frames is reused.
    """
    if every < 1:
        raise CoarseLoftrError(f"--frame-every must be 1 or more, got {every}")
    done = output / "frames.done"
    if done.is_file():  # written by an earlier, finished run
        return int(done.read_text().strip() or 0)
    output.mkdir(parents=True, exist_ok=True)
    config = ReplayConfig(source=source, output=output / "unused.mcap", image_topic=image_topic, use_camera_info=False)
    stream = open_source(config)
    written = index = 0
    try:
        for message in stream:
            if message.kind != "image" or message.message is None:
                continue
            index += 1
            if (index - 1) % every:
                continue
            try:
                image = message_to_numpy(message.message)
            except ImageError:
                continue
            if image.ndim == 3:
                image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
            if image.dtype != "uint8":
                image = cv2.normalize(image, None, 0, 255, cv2.NORM_MINMAX).astype("uint8")
            cv2.imwrite(str(output / f"{written:06d}.png"), image)
            written += 1
    finally:
        stream.close()
    if written < 2:
        raise CoarseLoftrError(f"{source} gave {written} frame(s); labelling needs at least 2 (check the topic and --frame-every)")
    done.write_text(f"{written}\n")
    return written
