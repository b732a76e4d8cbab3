"""The replay report: per-pair metrics, ``summary.json``, ``pairs.csv`` and a self-contained ``report.html``.

Public API:

- ``CameraModel.from_camera_info(msg)``: intrinsics and distortion of a
  ``sensor_msgs/CameraInfo`` (None when the camera is uncalibrated, K = 0);
  ``CameraInfoError`` (one line) for one the report cannot use correctly.
- ``geometric_inliers(keypoints0, keypoints1, camera0=None, camera1=None, threshold_px=3.0)``:
  how many matches agree with one epipolar geometry, found by RANSAC: an essential
  matrix on undistorted, normalised points when both cameras are calibrated, else a
  fundamental matrix on pixels. Returns ``(inliers, method)``; method None below 8 matches.
- ``ReportBuilder(directory, expected_pairs=None, ...)``: ``add(...)`` once per pair,
  ``finish(summary)`` at the end. Per-pair rows go to ``pairs.csv`` as they come; memory
  holds 20 bytes per pair (for the plots) and the few thumbnails.

The HTML page has no external resources: plots are inline SVG drawn here, thumbnails are
JPEG embedded as base64. Keypoints are pixels of the original images (x right, y down,
pixel centres at integers); the RANSAC threshold is in those pixels.
"""

from __future__ import annotations

import array
import base64
import csv
import html
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..errors import CoarseLoftrError

MIN_MATCHES_FOR_GEOMETRY = 8
THUMBNAIL_WIDTH = 960


class CameraInfoError(CoarseLoftrError, ValueError):
    """A CameraInfo whose calibration cannot be used: intrinsics that are not finite and
    positive, or a distortion OpenCV cannot apply."""


# Lengths of the distortion vector that cv2.undistortPoints accepts:
# (k1, k2, p1, p2[, k3[, k4, k5, k6[, s1, s2, s3, s4[, tx, ty]]]]), the order ROS uses too.
OPENCV_DISTORTION_LENGTHS = (4, 5, 8, 12, 14)
PINHOLE_MODELS = ("plumb_bob", "rational_polynomial")
FISHEYE_MODELS = ("equidistant",)  # cv2.fisheye: (k1, k2, k3, k4)


def opencv_distortion(model: str, coefficients: np.ndarray) -> np.ndarray:
    """A CameraInfo's ``D`` as a vector OpenCV accepts for its ``distortion_model``.

    Coefficients missing at the end are zero, so a shorter vector is padded with zeros to
    the next length OpenCV accepts (3 coefficients are k1, k2, p1; 6 are k1, k2, p1, p2,
    k3, k4); trailing zeros beyond the longest are dropped. All zeros: no distortion
    (empty), whatever the model. Raises ``CameraInfoError`` for anything else.
    """
    d = np.asarray(coefficients, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(d)):
        raise CameraInfoError(f"camera_info distortion D = {d.tolist()} is not finite; fix the calibration, or pass --no-camera-info")
    if not d.any():
        return np.zeros(0)
    lengths = (4,) if model in FISHEYE_MODELS else OPENCV_DISTORTION_LENGTHS
    if model not in PINHOLE_MODELS + FISHEYE_MODELS:
        raise CameraInfoError(
            f"camera_info distortion model {model!r} is not one of {', '.join(PINHOLE_MODELS + FISHEYE_MODELS)}; "
            "the report cannot undistort its points: pass --no-camera-info for fundamental-matrix inliers"
        )
    used = int(np.flatnonzero(d)[-1]) + 1  # up to the last non-zero coefficient
    if used > lengths[-1]:
        raise CameraInfoError(
            f"camera_info {model} distortion has {d.size} coefficients, {used} in use; OpenCV takes at most {lengths[-1]} "
            "for this model: fix the calibration, or pass --no-camera-info"
        )
    length = next(n for n in lengths if n >= used)
    return np.concatenate([d[:length], np.zeros(max(0, length - d.size))])


@dataclass(frozen=True)
class CameraModel:
    """Pinhole intrinsics ``K`` (3x3, pixels) and distortion ``D`` of one camera (``D`` as
    OpenCV takes it: see ``opencv_distortion``; empty for none)."""

    K: np.ndarray
    D: np.ndarray
    distortion_model: str

    @classmethod
    def from_camera_info(cls, msg: Any) -> "CameraModel | None":
        """From a ``sensor_msgs/CameraInfo`` (rclpy or rosbags); None when K is all zeros
        (uncalibrated, the ROS convention). Raises ``CameraInfoError`` when K is not 9
        numbers, fx, fy, cx or cy is not finite, fx or fy is not positive, or the distortion
        cannot be used."""
        K = np.asarray(msg.k, dtype=np.float64).reshape(-1)
        if K.size != 9:
            raise CameraInfoError(f"camera_info K has {K.size} values, not 9 (a row-major 3x3 matrix); fix the publisher, or pass --no-camera-info")
        K = K.reshape(3, 3)
        if not K.any():
            return None
        fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
        if not (np.all(np.isfinite(K)) and fx > 0 and fy > 0):
            raise CameraInfoError(
                f"camera_info intrinsics fx={fx:g} fy={fy:g} cx={cx:g} cy={cy:g} are not finite with positive focal lengths; "
                "fix the calibration, or pass --no-camera-info"
            )
        model = str(msg.distortion_model)
        return cls(K=K, D=opencv_distortion(model, np.asarray(msg.d, dtype=np.float64)), distortion_model=model)

    @property
    def focal_px(self) -> float:
        return float(self.K[0, 0] + self.K[1, 1]) / 2.0

    def normalise(self, points: np.ndarray) -> np.ndarray:
        """Undistorted normalised image coordinates (N, 2) of pixel ``points`` (N, 2)."""
        pts = np.ascontiguousarray(points, dtype=np.float64).reshape(-1, 1, 2)
        if not self.D.size:  # no distortion: intrinsics only
            out = cv2.undistortPoints(pts, self.K, None)
        elif self.distortion_model in FISHEYE_MODELS:
            out = cv2.fisheye.undistortPoints(pts, self.K, self.D)
        else:
            out = cv2.undistortPoints(pts, self.K, self.D)
        return out.reshape(-1, 2)


def geometric_inliers(
    keypoints0: np.ndarray,
    keypoints1: np.ndarray,
    camera0: CameraModel | None = None,
    camera1: CameraModel | None = None,
    threshold_px: float = 3.0,
) -> tuple[int, str | None]:
    """Number of matches consistent with one two-view geometry (RANSAC, 99.9 % confidence).

    Essential matrix when both cameras are calibrated (threshold converted to normalised
    units with the mean focal length), else fundamental matrix. ``(0, None)`` for fewer
    than 8 matches; no inliers for matches too degenerate for OpenCV's solver.
    """
    n = int(len(keypoints0))
    if n < MIN_MATCHES_FOR_GEOMETRY:
        return 0, None
    try:
        if camera0 is not None and camera1 is not None:
            x0, x1 = camera0.normalise(keypoints0), camera1.normalise(keypoints1)
            focal = (camera0.focal_px + camera1.focal_px) / 2.0
            method = "essential"
            _, mask = cv2.findEssentialMat(x0, x1, np.eye(3), method=cv2.RANSAC, prob=0.999, threshold=threshold_px / focal)
        else:
            p0 = np.ascontiguousarray(keypoints0, dtype=np.float64).reshape(-1, 2)
            p1 = np.ascontiguousarray(keypoints1, dtype=np.float64).reshape(-1, 2)
            method = "fundamental"
            _, mask = cv2.findFundamentalMat(p0, p1, cv2.FM_RANSAC, threshold_px, 0.999)
    except cv2.error:  # degenerate matches (no motion, a few points repeated): OpenCV's solver asserts
        mask = None
    inliers = 0 if mask is None else int(np.count_nonzero(mask))
    return inliers, method


# --------------------------------------------------------------------------- plots (inline SVG)

_PLOT_W, _PLOT_H = 760, 240
_MARGIN_L, _MARGIN_R, _MARGIN_T, _MARGIN_B = 60, 16, 14, 40
_MAX_POINTS = 1500


def _nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    span = high - low
    if span <= 0 or not math.isfinite(span):
        return [low]
    raw = span / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step) * step
    return [round(first + i * step, 10) for i in range(int((high - first) / step + 1e-9) + 1)]


def _tick_label(value: float) -> str:
    return f"{value:.0f}" if abs(value) >= 100 or float(value).is_integer() else f"{value:.3g}"


class _Axes:
    """Pixel mapping of a plot area and its axes as SVG elements."""

    def __init__(self, x_range: tuple[float, float], y_range: tuple[float, float]) -> None:
        (x0, x1), (y0, y1) = x_range, y_range
        self.x0, self.x1 = (x0, x1) if x1 > x0 else (x0 - 0.5, x0 + 0.5)
        self.y0, self.y1 = (y0, y1) if y1 > y0 else (y0 - 0.5, y0 + 0.5)
        self.inner_w = _PLOT_W - _MARGIN_L - _MARGIN_R
        self.inner_h = _PLOT_H - _MARGIN_T - _MARGIN_B

    def px(self, x: np.ndarray | float) -> np.ndarray | float:
        return _MARGIN_L + (np.asarray(x, dtype=float) - self.x0) / (self.x1 - self.x0) * self.inner_w

    def py(self, y: np.ndarray | float) -> np.ndarray | float:
        return _MARGIN_T + self.inner_h - (np.asarray(y, dtype=float) - self.y0) / (self.y1 - self.y0) * self.inner_h

    def frame(self, x_label: str, y_label: str) -> list[str]:
        parts = [f'<rect x="{_MARGIN_L}" y="{_MARGIN_T}" width="{self.inner_w}" height="{self.inner_h}" class="area"/>']
        for value in _nice_ticks(self.y0, self.y1):
            y = float(self.py(value))
            parts.append(f'<line x1="{_MARGIN_L}" x2="{_MARGIN_L + self.inner_w}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
            parts.append(f'<text x="{_MARGIN_L - 6}" y="{y + 4:.1f}" text-anchor="end">{_tick_label(value)}</text>')
        for value in _nice_ticks(self.x0, self.x1, 8):
            x = float(self.px(value))
            parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{_MARGIN_T + self.inner_h}" y2="{_MARGIN_T + self.inner_h + 4}" class="axis"/>')
            parts.append(f'<text x="{x:.1f}" y="{_MARGIN_T + self.inner_h + 17}" text-anchor="middle">{_tick_label(value)}</text>')
        parts.append(f'<text x="{_MARGIN_L + self.inner_w / 2:.0f}" y="{_PLOT_H - 4}" text-anchor="middle" class="label">{html.escape(x_label)}</text>')
        parts.append(f'<text x="14" y="{_MARGIN_T + self.inner_h / 2:.0f}" text-anchor="middle" class="label" '
                     f'transform="rotate(-90 14 {_MARGIN_T + self.inner_h / 2:.0f})">{html.escape(y_label)}</text>')
        return parts


def _svg(parts: list[str], title: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {_PLOT_W} {_PLOT_H}" role="img" class="plot">'
            f"<title>{html.escape(title)}</title>" + "".join(parts) + "</svg>")


def svg_series(x: np.ndarray, y: np.ndarray, title: str, x_label: str, y_label: str,
               y_range: tuple[float, float] | None = None) -> str:
    """A line plot of y over x; beyond 1500 points, bucket means with a min-max band."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    finite = np.isfinite(x) & np.isfinite(y)
    x, y = x[finite], y[finite]
    if x.size == 0:
        return '<p class="empty">no data</p>'
    order = np.argsort(x, kind="stable")
    x, y = x[order], y[order]
    if y_range is None:
        low, high = float(y.min()), float(y.max())
        y_range = (min(0.0, low), high + 0.05 * max(high - low, 1.0))
    axes = _Axes((float(x[0]), float(x[-1])), y_range)
    parts = axes.frame(x_label, y_label)
    if x.size > _MAX_POINTS:
        chunks = np.array_split(np.arange(x.size), _MAX_POINTS // 2)
        cx = np.array([x[c].mean() for c in chunks])
        lo = np.array([y[c].min() for c in chunks])
        hi = np.array([y[c].max() for c in chunks])
        y = np.array([y[c].mean() for c in chunks])
        x = cx
        band = list(zip(axes.px(x), axes.py(hi))) + list(zip(axes.px(x[::-1]), axes.py(lo[::-1])))
        parts.append('<polygon class="band" points="' + " ".join(f"{a:.1f},{b:.1f}" for a, b in band) + '"/>')
    points = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(axes.px(x), axes.py(y)))
    parts.append(f'<polyline class="line" points="{points}"/>')
    if x.size <= 200:
        parts += [f'<circle cx="{a:.1f}" cy="{b:.1f}" r="2.2" class="dot"/>' for a, b in zip(axes.px(x), axes.py(y))]
    return _svg(parts, title)


def svg_histogram(values: np.ndarray, title: str, x_label: str, bins: int | None = None) -> str:
    """A histogram of ``values`` (count per bin)."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return '<p class="empty">no data</p>'
    bins = bins or int(np.clip(np.sqrt(values.size), 5, 40))
    counts, edges = np.histogram(values, bins=bins)
    axes = _Axes((float(edges[0]), float(edges[-1])), (0.0, float(counts.max()) * 1.05))
    parts = axes.frame(x_label, "pairs")
    for count, left, right in zip(counts, edges[:-1], edges[1:]):
        if count:
            x0, x1 = float(axes.px(left)), float(axes.px(right))
            y = float(axes.py(count))
            parts.append(f'<rect class="bar" x="{x0:.1f}" y="{y:.1f}" width="{max(x1 - x0 - 1, 0.5):.1f}" '
                         f'height="{float(axes.py(0)) - y:.1f}"><title>{left:.3g}-{right:.3g}: {count}</title></rect>')
    return _svg(parts, title)


# --------------------------------------------------------------------------- report


def _statistics(values: np.ndarray) -> dict[str, float] | None:
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None
    p = np.percentile(values, [5, 50, 90, 99])
    return {"mean": round(float(values.mean()), 4), "median": round(float(p[1]), 4), "p5": round(float(p[0]), 4),
            "p90": round(float(p[2]), 4), "p99": round(float(p[3]), 4), "min": round(float(values.min()), 4),
            "max": round(float(values.max()), 4)}


def _thumbnail(picture: np.ndarray) -> str:
    """A BGR picture as a base64 JPEG at most THUMBNAIL_WIDTH wide."""
    if picture.shape[1] > THUMBNAIL_WIDTH:
        scale = THUMBNAIL_WIDTH / picture.shape[1]
        picture = cv2.resize(picture, (THUMBNAIL_WIDTH, max(1, round(picture.shape[0] * scale))), interpolation=cv2.INTER_AREA)
    ok, encoded = cv2.imencode(".jpg", picture, [cv2.IMWRITE_JPEG_QUALITY, 80])
    if not ok:
        raise ValueError(f"cannot JPEG-encode a thumbnail of shape {picture.shape}")
    return base64.b64encode(encoded.tobytes()).decode("ascii")


class ReportBuilder:
    """Collects per-pair metrics during a replay and writes the report files.

    ``expected_pairs`` (when known) spreads the ``thumbnails`` evenly over the run;
    otherwise pairs 0, 10, 100, ... are shown. The pair with the fewest matches is
    always shown as well.
    """

    def __init__(self, directory: Path, expected_pairs: int | None = None, ransac_px: float = 3.0,
                 thumbnails: int = 6, overlay_max_lines: int = 200) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.ransac_px = ransac_px
        self.overlay_max_lines = overlay_max_lines
        if expected_pairs:
            count = min(thumbnails, expected_pairs)
            self._thumbnail_at = {round(k * (expected_pairs - 1) / max(count - 1, 1)) for k in range(count)}
        else:
            self._thumbnail_at = {0} | {10 ** k for k in range(1, 1 + max(thumbnails - 1, 0))}
        self.stamp_s = array.array("d")
        self.matches = array.array("i")
        self.latency_ms = array.array("f")
        self.matcher_ms = array.array("f")
        self.inlier_ratio = array.array("f")
        self.methods: dict[str, int] = {}
        self.thumbnails: list[dict[str, Any]] = []
        self._worst: tuple[int, Any, float] | None = None  # (index, matched pair, inlier ratio)
        self._csv_file = (self.directory / "pairs.csv").open("w", newline="", encoding="utf-8")
        self._csv = csv.writer(self._csv_file)
        self._csv.writerow(["pair", "stamp_s", "frame0_stamp_s", "matches", "latency_ms", "matcher_ms", "inliers", "inlier_ratio", "geometry"])

    def add(self, index: int, matched: Any, latency_ms: float, camera0: CameraModel | None,
            camera1: CameraModel | None, picture: np.ndarray | None = None) -> None:
        """Record pair ``index`` (a ``MatchedPair``); ``picture``: its overlay if already drawn."""
        result = matched.result
        n = len(result)
        inliers, method = geometric_inliers(result.keypoints0, result.keypoints1, camera0, camera1, self.ransac_px)
        ratio = inliers / n if method is not None else float("nan")
        stamp = _stamp_s(matched.header1)
        self.stamp_s.append(stamp)
        self.matches.append(n)
        self.latency_ms.append(latency_ms)
        self.matcher_ms.append(float(result.timing_ms.get("total", float("nan"))))
        self.inlier_ratio.append(ratio)
        self.methods[method or "too few matches"] = self.methods.get(method or "too few matches", 0) + 1
        self._csv.writerow([index, f"{stamp:.9f}", f"{_stamp_s(matched.header0):.9f}", n, f"{latency_ms:.3f}",
                            f"{result.timing_ms.get('total', float('nan')):.3f}", inliers if method else "",
                            f"{ratio:.4f}" if method else "", method or ""])
        if index in self._thumbnail_at:
            self._add_thumbnail(index, matched, ratio, picture, "")
        if self._worst is None or n < len(self._worst[1].result):
            self._worst = (index, matched, ratio)

    def _add_thumbnail(self, index: int, matched: Any, ratio: float, picture: np.ndarray | None, note: str) -> None:
        if picture is None:
            from ..matching.overlay import draw_matches

            picture = draw_matches(matched.image0, matched.image1, matched.result, max_lines=self.overlay_max_lines)
        caption = f"pair {index}{note} | t = {_stamp_s(matched.header1):.3f} s | {len(matched.result)} matches"
        if math.isfinite(ratio):
            caption += f" | inlier ratio {ratio:.2f}"
        self.thumbnails.append({"pair": index, "caption": caption, "jpeg_base64": _thumbnail(picture)})

    def finish(self, summary: dict) -> dict[str, Path]:
        """Write ``summary.json`` and ``report.html``; close ``pairs.csv``. Returns the paths."""
        self._csv_file.close()
        if self._worst is not None and self._worst[0] not in {t["pair"] for t in self.thumbnails}:
            index, matched, ratio = self._worst
            self._add_thumbnail(index, matched, ratio, None, " (fewest matches)")
        self._worst = None
        self.thumbnails.sort(key=lambda t: t["pair"])
        stamps = np.frombuffer(self.stamp_s, dtype=np.float64) if len(self.stamp_s) else np.zeros(0)
        data = dict(summary)
        data["statistics"] = {
            "matches_per_pair": _statistics(np.frombuffer(self.matches, dtype=np.int32)) if len(self.matches) else None,
            "latency_ms": _statistics(np.frombuffer(self.latency_ms, dtype=np.float32)) if len(self.latency_ms) else None,
            "matcher_ms": _statistics(np.frombuffer(self.matcher_ms, dtype=np.float32)) if len(self.matcher_ms) else None,
            "inlier_ratio": _statistics(np.frombuffer(self.inlier_ratio, dtype=np.float32)) if len(self.inlier_ratio) else None,
            "geometry": dict(self.methods),
            "ransac_threshold_px": self.ransac_px,
            "recording_span_s": round(float(stamps.max() - stamps.min()), 6) if stamps.size else 0.0,
        }
        data["thumbnails"] = [t["pair"] for t in self.thumbnails]
        paths = {"summary": self.directory / "summary.json", "html": self.directory / "report.html",
                 "pairs": self.directory / "pairs.csv"}
        paths["summary"].write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        paths["html"].write_text(self._html(data, stamps), encoding="utf-8")
        return paths

    def _html(self, data: dict, stamps: np.ndarray) -> str:
        t = stamps - stamps.min() if stamps.size else stamps
        matches = np.frombuffer(self.matches, dtype=np.int32) if len(self.matches) else np.zeros(0)
        latency = np.frombuffer(self.latency_ms, dtype=np.float32) if len(self.latency_ms) else np.zeros(0)
        ratio = np.frombuffer(self.inlier_ratio, dtype=np.float32) if len(self.inlier_ratio) else np.zeros(0)
        geometry = " / ".join(f"{k}: {v}" for k, v in data["statistics"]["geometry"].items()) or "none"
        stats = data["statistics"]

        def stat(name: str, key: str, unit: str = "") -> str:
            s = stats.get(name)
            return "n/a" if not s else f"{s[key]:.3g}{unit}"

        rows = [
            ("source", data.get("source", "")),
            ("mode", f"{data.get('mode', '')}: {', '.join(data.get('image_topics') or ['(file)'])}"),
            ("stamps", data.get("stamps") or "message header stamps"),
            ("camera_info", ", ".join(x for x in data.get("camera_info_topics") or [] if x) or "none"),
            ("model / backend", f"{data.get('model', '')} / {data.get('backend', '')}"),
            ("output", f"{data.get('output', '')} ({data.get('storage', '')}): {data.get('matches_written', 0)} MatchArray, "
                       f"{data.get('overlays_written', 0)} overlays"),
            ("ended", data.get("ended", "") + (f": {data['error']}" if data.get("error") else "")),
            ("messages read / images / pairs", f"{data.get('messages_read', 0)} / {data.get('images', 0)} / {data.get('pairs', 0)}"),
            ("skipped", ", ".join(f"{k}: {v}" for k, v in (data.get("skipped") or {}).items()) or "none"),
            ("unpaired images (stereo sync) / sequence restarts", f"{data.get('unpaired_images', 0)} / {data.get('sequence_restarts', 0)}"),
            ("throughput", f"{data.get('pairs_per_s', 0):.2f} pairs/s over {data.get('wall_s', 0):.1f} s"),
            ("matches per pair", f"median {stat('matches_per_pair', 'median')}, mean {stat('matches_per_pair', 'mean')}, "
                                 f"min {stat('matches_per_pair', 'min')}"),
            ("latency", f"median {stat('latency_ms', 'median', ' ms')}, p90 {stat('latency_ms', 'p90', ' ms')}, "
                        f"max {stat('latency_ms', 'max', ' ms')}"),
            ("inlier ratio", f"median {stat('inlier_ratio', 'median')}, p5 {stat('inlier_ratio', 'p5')} ({geometry}; "
                             f"RANSAC {self.ransac_px:g} px)"),
        ]
        table = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
        figures = "".join(
            f'<figure><img alt="{html.escape(th["caption"])}" src="data:image/jpeg;base64,{th["jpeg_base64"]}"/>'
            f"<figcaption>{html.escape(th['caption'])}</figcaption></figure>"
            for th in self.thumbnails
        ) or '<p class="empty">no pairs</p>'
        plots = [
            ("Matches per pair", svg_series(t, matches, "matches per pair over time", "time since the first pair (s)", "matches")),
            ("Inlier ratio per pair", svg_series(t, ratio, "inlier ratio per pair over time", "time since the first pair (s)",
                                                 "inlier ratio", y_range=(0.0, 1.02))),
            ("Latency", svg_histogram(latency, "latency histogram", "latency per pair (ms): decoding + matching")),
        ]
        sections = "".join(f"<h2>{html.escape(title)}</h2>{svg}" for title, svg in plots)
        title = f"coarse-loftr replay: {Path(str(data.get('source', ''))).name}"
        return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 980px; color: #222; padding: 0 1em; }}
table {{ border-collapse: collapse; margin-bottom: 1em; }}
th, td {{ text-align: left; padding: 3px 10px; border-bottom: 1px solid #ddd; vertical-align: top; }}
th {{ font-weight: 600; white-space: nowrap; }}
svg.plot {{ width: 100%; max-width: {_PLOT_W}px; height: auto; font-size: 11px; }}
svg .area {{ fill: #fafafa; stroke: #999; }} svg .grid {{ stroke: #e3e3e3; }} svg .axis {{ stroke: #999; }}
svg .line {{ fill: none; stroke: #1f6fb4; stroke-width: 1.4; }} svg .dot {{ fill: #1f6fb4; }}
svg .band {{ fill: #1f6fb4; fill-opacity: 0.18; stroke: none; }} svg .bar {{ fill: #2f8f5b; }}
svg .label {{ font-size: 12px; fill: #444; }}
figure {{ margin: 0 0 1.2em 0; }} figure img {{ max-width: 100%; border: 1px solid #ccc; }}
figcaption {{ font-size: 0.9em; color: #555; }} .empty {{ color: #888; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<table>{table}</table>
{sections}
<h2>Overlays</h2>
{figures}
<p class="empty">Per-pair numbers: pairs.csv; all figures above: summary.json.</p>
</body></html>
"""


def _stamp_s(header: Any) -> float:
    return int(header.stamp.sec) + int(header.stamp.nanosec) * 1e-9
