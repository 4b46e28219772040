"""Tempo, beat times and an energy envelope from mono samples, with numpy and scipy only.

Beats follow the classic dynamic-programming tracker: an onset-strength envelope from
spectral flux, a tempo from its autocorrelation (weighted towards 120 BPM to avoid octave
errors), then the beat sequence that best trades onset strength against regular spacing.
"""

from __future__ import annotations

from typing import Any, cast

import numpy as np

#: Sample rate, in Hz, sound is analysed at.
SAMPLE_RATE = 22050
#: STFT window and hop, in samples (hop = ~23 ms at SAMPLE_RATE).
FFT_SIZE, HOP = 1024, 512
#: Tempo search range, in beats per minute, and the prior's centre and width (octaves).
MIN_BPM, MAX_BPM, PRIOR_BPM, PRIOR_WIDTH = 40.0, 240.0, 120.0, 1.0
#: How hard the tracker holds beats to the tempo (larger = more regular).
TIGHTNESS = 100.0
#: Energy envelope window, in milliseconds.
ENERGY_WINDOW_MS = 50
#: Tempo reported when there is too little rhythm to measure one.
FALLBACK_BPM = 120.0
#: STFT frames (and energy windows) computed per block: memory stays bounded (~10 MiB) whatever
#: the length; the whole 600 s at once took over 400 MiB (a complex128 spectrogram and copies).
BLOCK = 1024


def energy(samples: np.ndarray) -> dict[str, Any]:
    """RMS per window, normalised to 0..1; value i covers [i, i+1) × window_ms."""
    size = SAMPLE_RATE * ENERGY_WINDOW_MS // 1000
    windows = samples[: len(samples) // size * size].reshape(-1, size)
    # Per window, so computing it block by block gives the very same values with a bounded copy.
    rms = np.concatenate([np.sqrt(np.mean(windows[i:i + BLOCK].astype(np.float64) ** 2, axis=1))
                          for i in range(0, len(windows), BLOCK)]) if len(windows) else np.zeros(0)
    peak = rms.max(initial=0.0)
    values = rms / peak if peak > 0 else rms
    return {"window_ms": ENERGY_WINDOW_MS, "values": [round(float(v), 4) for v in values]}


def beats(samples: np.ndarray) -> dict[str, Any]:
    """`tempo` (BPM) and `beat_times` (seconds)."""
    onset = onset_strength(samples)
    fps = SAMPLE_RATE / HOP
    if len(onset) < 4 or not onset.any():
        return {"tempo": FALLBACK_BPM, "beat_times": []}
    period = fps * 60.0 / estimate_tempo(onset, fps)
    frames = track(onset, period)
    times = [round(float(f) / fps, 4) for f in frames]
    tempo = 60.0 / float(np.mean(np.diff(times))) if len(times) >= 4 else 60.0 * fps / period
    return {"tempo": round(tempo, 2), "beat_times": times}


def onset_strength(samples: np.ndarray) -> np.ndarray:
    """Positive spectral flux of log magnitude, one value per hop, normalised to 0..1."""
    if len(samples) < FFT_SIZE:
        return np.zeros(0)
    from scipy import signal  # here, not at the top: the web app imports the engine but never this

    count = 1 + (len(samples) - FFT_SIZE) // HOP  # STFT frames, as stft(padded=False) makes them
    parts, last = [np.zeros(1)], None
    # Block by block (each frame's window is the same samples as in one whole STFT, so the values
    # are too); the previous block's last column carries the difference across the cut.
    for first in range(0, count, BLOCK):
        end = min(count, first + BLOCK)
        _, _, spec = signal.stft(samples[first * HOP:(end - 1) * HOP + FFT_SIZE], nperseg=FFT_SIZE,
                                 noverlap=FFT_SIZE - HOP, boundary=None, padded=False)
        log_mag = np.log1p(100.0 * np.abs(spec))
        joined = log_mag if last is None else np.concatenate([last, log_mag], axis=1)
        parts.append(np.maximum(np.diff(joined, axis=1), 0.0).sum(axis=0))
        last = log_mag[:, -1:]
    flux = np.concatenate(parts)
    peak = flux.max()
    return flux / peak if peak > 0 else flux


def estimate_tempo(onset: np.ndarray, fps: float) -> float:
    """The most likely tempo, in BPM, from the onset envelope's autocorrelation."""
    centred = onset - onset.mean()
    from scipy import signal

    corr = signal.correlate(centred, centred, mode="full", method="fft")[len(onset) - 1:]
    lags = np.arange(len(corr), dtype=np.float64)
    with np.errstate(divide="ignore"):
        bpm = 60.0 * fps / lags
    usable = (bpm >= MIN_BPM) & (bpm <= MAX_BPM)
    if not usable.any():
        return FALLBACK_BPM
    prior = np.exp(-0.5 * (np.log2(bpm[usable] / PRIOR_BPM) / PRIOR_WIDTH) ** 2)
    weighted = np.maximum(corr[usable], 0.0) * prior
    best = int(lags[usable][np.argmax(weighted)])
    return 60.0 * fps / _refine(corr, best)


def _refine(corr: np.ndarray, lag: int) -> float:
    # Parabolic interpolation around the peak: sub-frame lag for a steadier tempo.
    if 0 < lag < len(corr) - 1:
        a, b, c = corr[lag - 1], corr[lag], corr[lag + 1]
        denom = a - 2 * b + c
        if denom < 0:
            return cast(float, lag + 0.5 * (a - c) / denom)  # a numpy float64 (typed Any)
    return float(lag)


def track(onset: np.ndarray, period: float) -> list[int]:
    """Frames of the beat sequence maximising onset strength plus spacing regularity."""
    n = len(onset)
    score = onset.astype(np.float64).copy()
    back = np.full(n, -1)
    offsets = np.arange(-int(round(2 * period)), -int(round(period / 2)) + 1)
    penalty = -TIGHTNESS * np.log(-offsets / period) ** 2
    for t in range(n):
        prev = t + offsets
        ok = prev >= 0
        if not ok.any():
            continue
        candidates = score[prev[ok]] + penalty[ok]
        best = int(np.argmax(candidates))
        score[t] += candidates[best]
        back[t] = prev[ok][best]
    last_window = score[max(0, n - int(round(period))):]
    t = int(np.argmax(last_window)) + max(0, n - int(round(period)))
    frames = []
    while t >= 0:
        frames.append(t)
        t = int(back[t])
    return frames[::-1]
