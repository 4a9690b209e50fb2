"""Vocals / accompaniment separation with Deezer's pretrained Spleeter 2stems.

Method (Hennequin et al., "Spleeter: a fast and efficient music source
separation tool with pre-trained models", JOSS 2020; the network is the
U-Net of Jansson et al., ISMIR 2017), reproducing ``spleeter/model/__init__.py``
of the reference implementation with the network run by onnxruntime
(converted from the TensorFlow checkpoint by ``ops/models.py``):

1. STFT of each channel at 44.1 kHz: 4096-sample periodic Hann frames, hop
   1024, after prepending 4096 zeros and zero-padding the end (TF
   ``stft(..., pad_end=True)``).
2. The magnitudes of the lowest 1024 bins (0 to 11 kHz), stereo, in segments
   of 512 frames (11.9 s), go through one U-Net per stem, which estimates the
   stem's magnitude spectrogram y_i.
3. Ratio masks ``m_i = (y_i^2 + eps/2) / (y_vocals^2 + y_accomp^2 + eps)``
   (Spleeter's separation_exponent 2, EPSILON 1e-10) on those bins. Above
   bin 1024 the 2stems config extends the masks with zeros; here the vocals
   mask is extended with zeros and the accompaniment takes the rest, so
   that the stems add up to the mixture (Spleeter's own accompaniment is
   low-passed at 11 kHz; ours keeps the cymbals and air).
4. The vocals mask times the complex mixture STFT, inverse STFT (overlap-add
   with the window, times 2/3 to undo the Hann^2 overlap gain of 1.5),
   trimmed to the input. The accompaniment is the mixture minus the vocals,
   which is the same as masking with ``1 - m_vocals`` because the STFT
   reconstructs the input exactly.

Memory is bounded for long tracks: the STFT is never held whole.
:meth:`SpleeterModel.vocals_stream` takes the input in blocks and, per
step, the STFT of ``segment`` frames (512, what the network was trained
on), runs the network and overlap-adds the inverse STFT of the middle
``segment - 2 * margin`` frames onto an accumulator; what no later segment
touches is handed on (~100 MB working memory per step). With the default
``margin`` 0 the segments are Spleeter's own (``pad_and_partition`` from
frame 0): the U-Net's receptive field spans a whole segment, so a margin
only moves edge effects (measured in bench/docs/separation.md), and mask
changes at a join are smoothed by the 4096-sample overlapping windows.

Units: samples at 44 100 Hz, float32 in [-1, 1] (not enforced).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from scipy import fft

from workers.dsp.blocks import FrameBuffer
from workers.dsp.errors import UnprocessableAudio

SAMPLE_RATE = 44100
FRAME = 4096
HOP = 1024
N_BINS = 1024  # network bins: 0 .. 11 kHz
SEGMENT = 512  # frames per network run (T in the 2stems config)
MARGIN = 0  # frames of context dropped at each side of a segment (see above)
EPSILON = 1e-10  # Spleeter's EstimatorSpecBuilder.EPSILON
WINDOW_COMPENSATION = 2.0 / 3.0  # 1 / sum of Hann^2 at 75 % overlap
MODEL_FILE = "spleeter-2stems.onnx"
# A segment must be a multiple of 2**6: the U-Net halves it six times.
_UNET_STRIDE = 64


def _hann(n: int) -> np.ndarray:
    # Periodic Hann, as tf.signal.hann_window(periodic=True).
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)).astype(np.float32)


class SpleeterModel:
    """Spleeter 2stems, loaded once and reused for many tracks."""

    name = "spleeter-2stems"  # reported as the result's "model"
    sample_rate = SAMPLE_RATE
    stems = ("vocals", "accompaniment")

    def __init__(self, session, *, segment: int = SEGMENT, margin: int = MARGIN) -> None:
        if segment % _UNET_STRIDE or not 0 <= 2 * margin < segment:
            raise ValueError(f"segment must be a multiple of {_UNET_STRIDE} longer than 2 * margin")
        self._session = session
        self.segment = segment
        self.margin = margin
        self._window = _hann(FRAME)

    @classmethod
    def load(
        cls, model_dir: Path, *, threads: int | None = None, segment: int = SEGMENT, margin: int = MARGIN
    ) -> SpleeterModel | None:
        """The model in ``model_dir`` (see ``ops.models.fetch_spleeter``), or
        None when it has not been fetched. ``threads``: onnxruntime intra-op
        threads, default every core this process may use."""
        path = Path(model_dir) / MODEL_FILE
        if not path.exists():
            return None
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads is None:
            threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        options.intra_op_num_threads = threads or 1
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle threads must not spin between runs: the STFT work in between
        # and other workers on the machine need the cores.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return cls(session, segment=segment, margin=margin)

    def separate(
        self, x: np.ndarray, progress: Callable[[float], None] | None = None
    ) -> dict[str, np.ndarray]:
        """Split ``x`` into vocals and accompaniment (``x`` minus the vocals):
        ``{"vocals", "accompaniment"}`` float32 arrays of ``x``'s shape that
        sum to ``x``. See :meth:`vocals`."""
        vocals = self.vocals(x, progress)
        return {"vocals": vocals, "accompaniment": np.asarray(x, np.float32) - vocals}

    def vocals(self, x: np.ndarray, progress: Callable[[float], None] | None = None) -> np.ndarray:
        """The vocals of ``x`` (frames,) or (frames, channels) float at 44.1 kHz;
        mono is duplicated to stereo for the network and returned as mono.
        Float32 of ``x``'s shape. ``progress(fraction)`` is called after each
        segment, increasing, ending with 1.0. The whole-array form of
        :meth:`vocals_stream` (the same samples).
        """
        x = np.asarray(x)
        shape = x.shape
        if x.ndim == 1:
            x = x[:, None]
        if x.ndim != 2 or x.shape[1] not in (1, 2):
            raise UnprocessableAudio(f"separation needs mono or stereo audio, got shape {shape}")
        if x.shape[0] == 0:
            raise UnprocessableAudio("the audio is empty")
        x = np.asarray(x, np.float32)
        if not np.isfinite(x).all():
            raise UnprocessableAudio("the audio contains NaN or infinite samples")
        stereo = x if x.shape[1] == 2 else np.repeat(x, 2, axis=1)
        n = len(stereo)
        n_frames = -(-(n + FRAME) // HOP)

        def report(frames_done: int) -> None:
            if progress is not None:
                progress(min(1.0, frames_done / n_frames))

        parts = list(self.vocals_stream(iter([stereo]), segment_done=report))
        vocals = np.concatenate(parts) if parts else np.zeros((0, 2), np.float32)
        if progress is not None:
            progress(1.0)
        if x.shape[1] == 1:
            vocals = vocals.mean(axis=1, keepdims=True)
        return vocals.reshape(shape)

    def vocals_stream(
        self, blocks: Iterator[np.ndarray], segment_done: Callable[[int], None] | None = None
    ) -> Iterator[np.ndarray]:
        """The vocals of a stereo 44.1 kHz float32 signal given as consecutive
        (m, 2) blocks, as consecutive float32 (k, 2) blocks that add up to the
        input's length. Memory is one segment's working set (~100 MB) and
        ~12 s of input and output, whatever the length. ``segment_done(f)``
        is called after each segment with the STFT frames done so far.

        The samples are exactly those of running the segments over the whole
        array: each segment's inverse STFT is overlap-added onto the same
        accumulator values in the same order; only what no later segment
        touches is handed on.
        """
        it = iter(blocks)
        buf = FrameBuffer(2)
        exhausted = False

        def fill(upto: int) -> None:
            nonlocal exhausted
            while not exhausted and buf.end < upto:
                try:
                    buf.append(np.asarray(next(it), np.float32))
                except StopIteration:
                    exhausted = True

        keep = self.segment - 2 * self.margin
        acc = np.zeros((0, 2), np.float32)  # output samples [acc_start, acc_start + len(acc))
        acc_start = 0
        first = 0
        while True:
            seg_first = first - self.margin
            # Input samples [seg_first*HOP - FRAME, (seg_first + segment - 1)*HOP) make the
            # segment's STFT; one more tells whether the input ends inside it.
            fill((seg_first + self.segment - 1) * HOP + 1)
            count = keep
            if exhausted:
                n_frames = -(-(buf.end + FRAME) // HOP)
                if first >= n_frames:
                    break
                count = min(keep, n_frames - first)
            limit = buf.end  # the input's length, or beyond every sample this segment reads
            lo, ola = self._vocals_segment(buf, limit, first, count)
            a, b = max(lo, 0), min(lo + len(ola), limit)
            if b > len(acc) + acc_start:
                acc = np.concatenate([acc, np.zeros((b - acc_start - len(acc), 2), np.float32)])
            if b > a:
                acc[a - acc_start : b - acc_start] += ola[a - lo : b - lo]
            if segment_done is not None:
                segment_done(first + count)
            # Later segments write from their first frame's start on.
            final = min((first + keep) * HOP - FRAME, acc_start + len(acc))
            if final > acc_start:
                yield acc[: final - acc_start].copy()
                acc = acc[final - acc_start :].copy()
                acc_start = final
            first += keep
            buf.drop_before((first - self.margin) * HOP - FRAME)
        if len(acc):
            yield acc

    def _stft(self, buf: FrameBuffer, limit: int, first: int, count: int) -> np.ndarray:
        """Complex STFT frames ``first .. first+count`` of the signal held in
        ``buf`` (n, 2), shape (2, count, FRAME // 2 + 1); samples before 0 and
        from ``limit`` on are zero."""
        lo = first * HOP - FRAME  # index of the first frame's first sample
        length = (count - 1) * HOP + FRAME
        frames_buf = np.zeros((2, length), np.float32)
        a, b = max(lo, 0), min(lo + length, limit)
        if b > a:
            frames_buf[:, a - lo : b - lo] = buf.view(a, b).T
        frames = np.lib.stride_tricks.sliding_window_view(frames_buf, FRAME, axis=1)[:, ::HOP]
        return fft.rfft(frames * self._window, axis=-1)

    def _vocals_segment(self, buf: FrameBuffer, limit: int, first: int, count: int) -> tuple[int, np.ndarray]:
        """The overlap-added vocals of frames ``first .. first+count``: (index
        of their first sample, float32 (samples, 2))."""
        seg_first = first - self.margin
        spec = self._stft(buf, limit, seg_first, self.segment)  # (2, segment, bins)
        mag = np.abs(spec[:, :, :N_BINS]).astype(np.float32)
        y_vocals, y_accomp = self._session.run(["vocals", "accompaniment"], {"mix": mag[None]})
        core = slice(self.margin, self.margin + count)
        v2 = np.square(y_vocals[0, :, core], dtype=np.float32)
        a2 = np.square(y_accomp[0, :, core], dtype=np.float32)
        mask = (v2 + EPSILON / 2) / (v2 + a2 + EPSILON)
        masked = np.zeros_like(spec[:, core])  # bins above N_BINS: vocals mask 0
        masked[:, :, :N_BINS] = mask * spec[:, core, :N_BINS]
        frames = fft.irfft(masked, n=FRAME, axis=-1) * (self._window * WINDOW_COMPENSATION)

        # Overlap-add: frame j starts at index (first + j) * HOP - FRAME.
        lo = first * HOP - FRAME
        length = (count - 1) * HOP + FRAME
        ola = np.zeros((2, length), np.float32)
        for j in range(count):
            ola[:, j * HOP : j * HOP + FRAME] += frames[:, j]
        return lo, ola.T
