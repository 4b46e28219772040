"""Probing without the ffprobe binary: PyAV (FFmpeg's own libraries) writes ffprobe's JSON.

No package on PyPI ships ffprobe, so on a machine whose ffmpeg is imageio-ffmpeg's the engine
probes with PyAV instead. Of the two pip-only options, parsing `ffmpeg -i` was measured too
and refused: it prints durations to 1/100 s, where ffprobe gives microseconds, so facts and
cache ids would change. PyAV reads the same demuxer fields ffprobe prints; this module turns
them into ffprobe's shape for exactly the fields the engine reads (`ENGINE_FIELDS`), formatted
as ffprobe formats them ("%f" seconds, "num/den" rates), so either probe gives the same dict.

It runs as `python -m l1web.engine.avprobe [--safe] FILE` in a child process, through
`ffmpeg.run`, so a hostile file cannot crash or hang the caller: the timeout and the
process-group kill are the same as for ffprobe.
"""

from __future__ import annotations

import argparse
import json
import sys
from fractions import Fraction
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from av.container import InputContainer
    from av.stream import Stream
    from av.video.codeccontext import VideoCodecContext

#: What the engine reads from a probe (l1web.engine.media, steps.task, steps.join, effects.video): format
#: fields, and per stream the fields listed (disposition.attached_pic, tags, side data rotation).
ENGINE_FIELDS = {
    "format": ("format_name", "duration"),
    "stream": ("codec_type", "codec_name", "width", "height", "pix_fmt", "avg_frame_rate",
               "r_frame_rate", "duration", "nb_frames"),
}
#: AV_TIME_BASE: container durations are in microseconds.
TIME_BASE = 1_000_000


def engine_view(data: dict[str, Any]) -> dict[str, Any]:
    """The engine's fields of a probe result (from ffprobe or from `probe`), for comparing."""
    fmt = {k: data.get("format", {}).get(k) for k in ENGINE_FIELDS["format"]}
    streams = []
    for stream in data.get("streams", []):
        view = {k: stream.get(k) for k in ENGINE_FIELDS["stream"]}
        view["attached_pic"] = stream.get("disposition", {}).get("attached_pic", 0)
        view["rotate"] = stream.get("tags", {}).get("rotate")
        view["rotation"] = next((s["rotation"] for s in stream.get("side_data_list", []) if "rotation" in s), None)
        streams.append(view)
    return {"format": fmt, "streams": streams}


def _open(path: str, format_whitelist: str | None, protocol_whitelist: str) -> InputContainer:
    """The file opened by PyAV under the same allow-lists ffprobe is given."""
    import av  # noqa: PLC0415 - only the fallback child imports FFmpeg's libraries

    options = {"protocol_whitelist": protocol_whitelist}
    if format_whitelist:
        options["format_whitelist"] = format_whitelist
    return av.open(path, options=options)


def probe(path: str, format_whitelist: str | None, protocol_whitelist: str) -> dict[str, Any]:
    """ffprobe-shaped JSON (format and streams) for a local file, read with PyAV."""
    with _open(path, format_whitelist, protocol_whitelist) as container:
        fmt: dict[str, Any] = {"format_name": container.format.name}
        if container.duration is not None:
            fmt["duration"] = _seconds(Fraction(container.duration, TIME_BASE))
        streams = [_stream(stream) for stream in container.streams]
        _add_rotation(container, streams)
    return {"streams": streams, "format": fmt}


def packets(path: str, format_whitelist: str | None, protocol_whitelist: str) -> dict[str, Any]:
    """ffprobe's `-select_streams v:0 -show_streams -show_entries packet=pts_time:format=start_time,
    format_name` for a local file, read with PyAV: the first video stream (rotation included),
    each of its packets' `pts_time` in demuxing order, and the container's start time."""
    data = probe(path, format_whitelist, protocol_whitelist)
    stream = next((s for s in data["streams"] if s.get("codec_type") == "video"), None)
    with _open(path, format_whitelist, protocol_whitelist) as container:
        fmt: dict[str, Any] = {"format_name": container.format.name}
        if container.start_time is not None:
            fmt["start_time"] = _seconds(Fraction(container.start_time, TIME_BASE))
        times: list[dict[str, str]] = []
        if stream is not None:
            video = container.streams[int(stream["index"])]
            base = video.time_base
            for packet in container.demux(video):
                if packet.pts is None and packet.size == 0:
                    continue  # PyAV's end-of-stream flush packet: ffprobe never shows one
                # ffprobe leaves out a packet's pts_time when it has none: so does this.
                times.append({} if packet.pts is None or base is None else {"pts_time": _seconds(packet.pts * base)})
    return {"streams": [stream] if stream is not None else [], "packets": times, "format": fmt}


def _stream(stream: Stream) -> dict[str, Any]:
    import av  # noqa: PLC0415

    out: dict[str, Any] = {"index": stream.index, "codec_type": stream.type}
    codec = stream.codec_context.codec if stream.codec_context is not None else None
    if codec is not None:
        out["codec_name"] = codec.canonical_name
    if stream.type == "video":
        video = cast("VideoCodecContext", stream.codec_context)  # a video stream's context
        out["width"], out["height"] = video.width, video.height
        if video.pix_fmt:
            out["pix_fmt"] = video.pix_fmt
    out["r_frame_rate"] = _rate(getattr(stream, "base_rate", None))
    out["avg_frame_rate"] = _rate(getattr(stream, "average_rate", None))
    if stream.duration is not None and stream.time_base is not None:
        out["duration"] = _seconds(stream.duration * stream.time_base)
    if stream.frames:  # the container's frame count (an MP4's index); ffprobe leaves out an unknown one
        out["nb_frames"] = str(stream.frames)
    out["disposition"] = {"attached_pic": int(bool(stream.disposition & av.stream.Disposition.attached_pic))}
    if stream.metadata:
        out["tags"] = dict(stream.metadata)
    return out


def _add_rotation(container: InputContainer, streams: list[dict[str, Any]]) -> None:
    """ffprobe's display-matrix rotation: PyAV exposes it on decoded frames, so read the first."""
    video = next((s for s in container.streams.video), None)
    if video is None or streams[video.index].get("disposition", {}).get("attached_pic"):
        return
    try:
        frame = next(container.decode(video=video.index))
    except (StopIteration, Exception):  # noqa: BLE001 - an undecodable stream has no rotation
        return
    rotation = round(frame.rotation or 0)
    if rotation:
        streams[video.index]["side_data_list"] = [{"side_data_type": "Display Matrix", "rotation": rotation}]


def _rate(rate: Fraction | None) -> str:
    """ffprobe prints an AVRational as num/den, and an unknown rate as 0/0."""
    if not rate:
        return "0/0"
    return f"{rate.numerator}/{rate.denominator}"


def _seconds(value: Fraction) -> str:
    """ffprobe prints times with "%f": six decimals."""
    return f"{float(value):f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="ffprobe-shaped JSON of a local media file, via PyAV.")
    parser.add_argument("--formats", default=None, help="demuxer allow-list (ffmpeg's format_whitelist)")
    parser.add_argument("--protocols", default="file,pipe", help="protocol allow-list")
    parser.add_argument("--packets", action="store_true",
                        help="the first video stream and its packets' times (ffprobe -show_entries packet=pts_time)")
    parser.add_argument("file")
    args = parser.parse_args(argv)
    try:
        result = (packets if args.packets else probe)(args.file, args.formats, args.protocols)
    except Exception as exc:  # noqa: BLE001 - reported like ffprobe: one line on stderr, exit 1
        print(f"{args.file}: {exc}", file=sys.stderr)
        return 1
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
