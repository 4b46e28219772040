"""Phase 1, analyze: what every SOURCE of a DAG is, and for sound its tempo, beats and energy.

Results are plain JSON-ready dicts, cached under an analysis id made from the input's content
hash and the sorted feature names, in any mapping the caller hands in (a dict in tests, Redis
in the server). A failed analysis raises and is never cached.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, MutableMapping
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from l1web.engine import ffmpeg
from l1web.engine.audio_features import SAMPLE_RATE, beats, energy
from l1web.engine.canonical import sha3_json
from l1web.engine.chunks import on_grid
from l1web.engine.dag import Dag
from l1web.engine.errors import DagError, MediaError
from l1web.engine.ffmpeg import MEDIA_INPUT_FLAGS
from l1web.engine.interfaces import Store
from l1web.engine.media import MediaInfo, checked_image, detect

#: Bump when the analysis code changes its results: old cached analyses are then ignored.
ANALYSIS_VERSION = "3"  # 2: video media says whether its frames are on a constant rate ("cfr"); 3: read
# through PyAV too where there is no ffprobe binary (version 2 said "cfr": false there)
#: Feature names `analyze` understands. "metadata" is always computed.
FEATURES = frozenset({"metadata", "beats", "tempo", "energy"})
#: What `analyze` computes when not told.
DEFAULT_FEATURES = ("metadata", "beats", "energy")
#: Longest stretch of sound analysed, in seconds, from the start.
MAX_AUDIO_SECONDS = 600.0
#: Seconds the audio extraction may take before it is killed.
EXTRACT_TIMEOUT = 120.0


def analysis_id(input_hash: str, features: Iterable[str]) -> str:
    """The cache key of one input's analysis."""
    return sha3_json({"input_hash": input_hash, "features": sorted(set(features)),
                      "version": ANALYSIS_VERSION})


def analyze(dag: Dag, store: Store, *, features: Iterable[str] = DEFAULT_FEATURES,
            cache: MutableMapping[str, dict[str, Any]] | None = None) -> dict[str, dict[str, Any]]:
    """Analysis of every SOURCE's file, by content hash; reused from `cache` when there."""
    wanted = sorted(set(features) | {"metadata"})
    unknown = set(wanted) - FEATURES
    if unknown:
        raise DagError(f"unknown analysis features: {', '.join(sorted(unknown))}")
    results = {}
    for digest in source_hashes(dag):
        key = analysis_id(digest, wanted)
        found = cache.get(key) if cache is not None else None
        if found is None:
            path, image = store.path_and_image(digest)
            found = analyze_file(path, digest, wanted, image=image)
            if cache is not None:
                cache[key] = found
        results[digest] = found
    return results


def source_hashes(dag: Dag) -> list[str]:
    """Content hashes of the DAG's SOURCE nodes, in node order, each once."""
    hashes: dict[str, None] = {}
    for node in dag.nodes.values():
        if node.type != "SOURCE":
            continue
        digest = node.config.get("hash")
        if not digest:
            raise DagError("SOURCE has no content hash: resolve inputs before analysis",
                           node=node.id, field="hash")
        hashes[digest] = None
    return list(hashes)


def analyze_file(path: Path, digest: str, features: list[str], *, image: MediaInfo | None = None) -> dict[str, Any]:
    """One file's analysis: media metadata, and tempo/beats/energy when it has sound.

    `image`: the facts the store recorded for an image (the same detection, made when it was
    stored): the file is not opened again for them (in profiles of small runs, Pillow opening
    each fresh input was ~9 % of the plan job's CPU)."""
    media = checked_image(path, image) if image is not None else detect(path)
    facts = media.to_dict()
    if media.kind == "video":
        facts["cfr"] = constant_rate(path)
    result = {"input_hash": digest, "analysis_id": analysis_id(digest, features),
              "features": features, "media": facts, "audio": None}
    sound = {"beats", "tempo", "energy"} & set(features)
    if media.has_audio and sound:
        samples = _mono_samples(path)
        audio: dict[str, Any] = {"sample_rate": SAMPLE_RATE, "seconds": len(samples) / SAMPLE_RATE}
        if {"beats", "tempo"} & sound:
            audio.update(beats(samples))
        if "energy" in sound:
            audio["energy"] = energy(samples)
        result["audio"] = audio
    return result


def constant_rate(path: Path) -> bool:
    """Whether the video's frames lie on the grid of its frame rate (engine/chunks.py `on_grid`):
    only such a video is split into chunks. False where its frame times cannot be read."""
    from l1web.engine.steps.seek import frame_index

    index = frame_index(Path(path))
    if index is None:
        return False
    rates = []
    for key in ("avg_frame_rate", "r_frame_rate"):
        try:
            rate = Fraction(index.stream.get(key) or "")
        except (ValueError, ZeroDivisionError):
            return False
        rates.append(float(rate))
    return on_grid(index.times, rates)


def _mono_samples(path: Path) -> np.ndarray:
    # Through a file, read once into the array: through a pipe the bytes were held twice more
    # while being joined (600 s are 53 MB of samples; peak memory is what bounds a worker).
    with tempfile.TemporaryDirectory(prefix="l1-audio-") as tmp:
        out = Path(tmp) / "mono.f32"
        ffmpeg.ffmpeg(
            *MEDIA_INPUT_FLAGS, "-i", str(path), "-t", str(MAX_AUDIO_SECONDS), "-vn", "-ac", "1",
            "-ar", str(SAMPLE_RATE), "-f", "f32le", str(out), timeout=EXTRACT_TIMEOUT,
        )
        samples = np.fromfile(out, dtype="<f4") if out.is_file() else np.zeros(0, "<f4")
    if not len(samples):
        raise MediaError(f"{path}: no decodable sound")
    return samples
