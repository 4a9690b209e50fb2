"""Audio as a sequence of blocks, for work whose memory must not grow with
the length of the track (stem separation, mastering).

A :class:`BlockSource` is audio that can be read from the start, in order,
as many times as an algorithm needs passes over it: ``blocks(size)`` yields
float32 arrays of shape (frames, channels), each at most ``size`` frames,
freshly allocated (a consumer may keep a block while it reads the next) and
never modified after they are yielded. The worker's file reader
(``workers.codec.open_source``) and :class:`ArraySource` (an array already in
memory: tests, benchmarks, short clips) both provide it; the algorithms see
no difference, so the whole-array functions and the streaming ones are the
same code.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

import numpy as np

#: Default block length in frames: 1.5 s at 44.1 kHz, 512 KiB of stereo float32.
BLOCK_FRAMES = 1 << 16


class BlockSource(Protocol):
    sample_rate: int  # Hz
    frames: int  # per channel
    channels: int

    def blocks(self, size: int = BLOCK_FRAMES) -> Iterator[np.ndarray]:
        """The audio from its first frame, as float32 (m, channels) blocks of
        at most ``size`` frames (the last may be shorter)."""
        ...


class ArraySource:
    """A :class:`BlockSource` over samples in memory, shape (frames,) or
    (frames, channels); blocks are float32 copies."""

    def __init__(self, x: np.ndarray, sample_rate: int) -> None:
        x = np.asarray(x)
        self._x = x[:, None] if x.ndim == 1 else x
        self.sample_rate = int(sample_rate)
        self.frames = int(self._x.shape[0])
        self.channels = int(self._x.shape[1]) if self._x.ndim == 2 else 0

    def blocks(self, size: int = BLOCK_FRAMES) -> Iterator[np.ndarray]:
        for a in range(0, self.frames, size):
            yield np.array(self._x[a : a + size], dtype=np.float32, order="C")


def concatenate(blocks: Iterator[np.ndarray], frames: int, channels: int) -> np.ndarray:
    """Gather ``frames`` frames of blocks into one float32 (frames, channels)
    array, filled in place (no list of blocks kept alongside)."""
    out = np.empty((frames, channels), np.float32)
    pos = 0
    for b in blocks:
        out[pos : pos + len(b)] = b
        pos += len(b)
    if pos != frames:
        raise ValueError(f"expected {frames} frames, got {pos}")
    return out


class FrameBuffer:
    """Frames ``[start, end)`` of a stream, appended block by block at the end
    and dropped from the front: the working window of an algorithm that runs
    over overlapping segments of a longer signal."""

    def __init__(self, channels: int) -> None:
        self.channels = channels
        self.start = 0
        self._parts: list[np.ndarray] = []
        self._frames = 0

    @property
    def end(self) -> int:
        return self.start + self._frames

    def append(self, block: np.ndarray) -> None:
        if len(block):
            self._parts.append(block)
            self._frames += len(block)

    def view(self, a: int, b: int) -> np.ndarray:
        """Frames ``[a, b)``, which must be held; a view, valid until the next call."""
        if not self.start <= a <= b <= self.end:
            raise IndexError(f"frames {a}..{b} requested, {self.start}..{self.end} held")
        if len(self._parts) > 1:
            self._parts = [np.concatenate(self._parts)]
        if not self._parts:
            return np.zeros((0, self.channels), np.float32)
        return self._parts[0][a - self.start : b - self.start]

    def drop_before(self, a: int) -> None:
        """Forget the frames before ``a`` (the rest is copied, so that the
        memory of what was dropped is freed)."""
        a = min(max(a, self.start), self.end)
        if a == self.start:
            return
        rest = self.view(a, self.end).copy()
        self._parts = [rest] if len(rest) else []
        self._frames = len(rest)
        self.start = a
