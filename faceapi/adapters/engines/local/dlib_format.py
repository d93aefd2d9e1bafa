"""Reading dlib's serialisation of the face recognition ResNet (`anet_type` of dlib's
Python binding, tools/python/src/face_recognition.cpp) without dlib.

dlib's format is not self-describing: a network is written by its C++ type, outermost
layer first, each wrapper writing its version and then its subnetwork before its own
details. So the reader walks a layer list built from the same template as dlib's
`anet_type` (ARCHITECTURE below) and checks every name, shape and setting the file
records against it; a file of another network is refused, not misread.

Byte formats (dlib 20.0 dlib/serialize.h, dlib/float_details.h, dlib/cuda/tensor.h):
- integers: one control byte (low 4 bits = byte count, 0x80 = negative) then that many
  little-endian magnitude bytes;
- bool: the character '0' or '1';
- std::string: its length as an integer, then the bytes;
- float/double: a float_details pair, mantissa (int64) and exponent (int16) as two
  integers, value = mantissa * 2**exponent (exponents 32000/32001/32002: +inf/-inf/NaN);
- tensor: version 2, then num_samples, k, nr, nc (integers), then the values as 4-byte
  little-endian IEEE floats; alias_tensor: version 1 and the four sizes, no data.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

Floats = npt.NDArray[np.float32]


class DlibFormatError(ValueError):
    """The file is not the network we expect, or is damaged."""


# The architecture ----------------------------------------------------------------------

@dataclass(frozen=True)
class Spec:
    """One layer of the template, outermost first. kind: loss, fc, avg_pool, max_pool,
    relu, affine, con, add_prev, tag, skip, input."""

    kind: str
    filters: int = 0  # con: filter count; fc: outputs
    size: int = 0  # con/pool window (0 for a pool over everything)
    stride: int = 1
    tag: int = 0  # tag id for tag/skip/add_prev


def _conv_spec(n: int, size: int, stride: int) -> Spec:
    return Spec("con", filters=n, size=size, stride=stride)


def _block(n: int, stride: int) -> list[Spec]:
    # block<N,BN,stride,SUB> = BN<con<N,3,3,1,1,relu<BN<con<N,3,3,stride,stride,SUB>>>>>
    return [Spec("affine"), _conv_spec(n, 3, 1), Spec("relu"), Spec("affine"),
            _conv_spec(n, 3, stride)]


def _ares(n: int) -> list[Spec]:
    # relu<add_prev1<block<N,affine,1,tag1<SUB>>>>
    return [Spec("relu"), Spec("add_prev", tag=1), *_block(n, 1), Spec("tag", tag=1)]


def _ares_down(n: int) -> list[Spec]:
    # relu<add_prev2<avg_pool<2,2,2,2,skip1<tag2<block<N,affine,2,tag1<SUB>>>>>>>
    return [Spec("relu"), Spec("add_prev", tag=2), Spec("avg_pool", size=2, stride=2),
            Spec("skip", tag=1), Spec("tag", tag=2), *_block(n, 2), Spec("tag", tag=1)]


def _architecture() -> tuple[Spec, ...]:
    layers: list[Spec] = [Spec("loss"), Spec("fc", filters=128), Spec("avg_pool", size=0)]
    layers += _ares_down(256)  # alevel0
    layers += _ares(256) + _ares(256) + _ares_down(256)  # alevel1
    layers += _ares(128) + _ares(128) + _ares_down(128)  # alevel2
    layers += _ares(64) + _ares(64) + _ares(64) + _ares_down(64)  # alevel3
    layers += _ares(32) + _ares(32) + _ares(32)  # alevel4
    layers += [Spec("max_pool", size=3, stride=2), Spec("relu"), Spec("affine"),
               _conv_spec(32, 7, 2), Spec("input")]
    return tuple(layers)


# loss_metric<fc_no_bias<128,avg_pool_everything<alevel0<...<alevel4<max_pool<3,3,2,2,
# relu<affine<con<32,7,7,2,2,input_rgb_image_sized<150>>>>>>>>>>>>>
ARCHITECTURE = _architecture()
CHIP_SIZE = 150


@dataclass
class Layer:
    """What the file holds for one layer of ARCHITECTURE (same index)."""

    spec: Spec
    name: str = ""  # the version string the file used ("con_4", "relu_", ...)
    weights: Floats | None = None  # con: (out, in, kh, kw); fc: (in, out)
    bias: Floats | None = None  # con: (out,)
    gamma: Floats | None = None  # affine: shape (1, k, nr, nc) for broadcasting
    beta: Floats | None = None
    padding: int = 0
    disabled: bool = False  # relu/affine switched off in the file
    relu_after: bool = False  # con_6 with its fused relu on
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)  # input: average red, green, blue
    extra: dict[str, float] = field(default_factory=dict)


# The reader --------------------------------------------------------------------------

class Reader:
    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)
        self.pos = 0

    def _take(self, count: int) -> memoryview:
        if count < 0 or self.pos + count > len(self._data):
            raise DlibFormatError(f"file ends early (offset {self.pos}, wanted {count} bytes)")
        chunk = self._data[self.pos:self.pos + count]
        self.pos += count
        return chunk

    def integer(self, *, signed: bool = True) -> int:
        control = self._take(1)[0]
        size = control & 0x0F
        if size == 0 or size > 8 or control & 0x70:
            raise DlibFormatError(f"bad integer control byte {control:#x} at {self.pos - 1}")
        value = int.from_bytes(self._take(size), "little")
        if control & 0x80:
            if not signed:
                raise DlibFormatError(f"negative value for an unsigned integer at {self.pos}")
            value = -value
        return value

    def boolean(self) -> bool:
        char = self._take(1)[0]
        if char not in (0x30, 0x31):
            raise DlibFormatError(f"bad bool byte {char:#x} at {self.pos - 1}")
        return char == 0x31

    def byte(self) -> int:
        """A char/unsigned char, written as the raw byte."""
        return int(self._take(1)[0])

    def string(self) -> str:
        length = self.integer(signed=False)
        if length > 256:
            raise DlibFormatError(f"implausible name length {length} at {self.pos}")
        return bytes(self._take(length)).decode("ascii", errors="replace")

    def real(self) -> float:
        """A float_details value as a Python float (double precision, exact)."""
        mantissa = self.integer()
        exponent = self.integer()
        if exponent == 32000:
            return math.inf
        if exponent == 32001:
            return -math.inf
        if exponent == 32002:
            return math.nan
        return math.ldexp(float(mantissa), exponent)

    def single(self) -> float:
        """A float_details value stored as a C++ float."""
        return float(np.float32(self.real()))

    def dims(self, version: int) -> tuple[int, int, int, int]:
        found = self.integer()
        if found != version:
            raise DlibFormatError(f"tensor version {found} (expected {version}) at {self.pos}")
        shape = (self.integer(), self.integer(), self.integer(), self.integer())
        if min(shape) < 0:
            raise DlibFormatError(f"negative tensor size {shape} at {self.pos}")
        return shape

    def tensor(self) -> tuple[tuple[int, int, int, int], Floats]:
        shape = self.dims(2)
        count = shape[0] * shape[1] * shape[2] * shape[3]
        raw = self._take(4 * count)
        return shape, np.frombuffer(raw, dtype="<f4").astype(np.float32)

    def alias(self) -> tuple[int, int, int, int]:
        return self.dims(1)

    def expect(self, names: tuple[str, ...], what: str) -> str:
        name = self.string()
        if name not in names:
            raise DlibFormatError(f"expected {what} ({' or '.join(names)}), found {name!r} "
                                  f"before offset {self.pos}")
        return name

    @property
    def at_end(self) -> bool:
        return self.pos == len(self._data)


def check(condition: bool, message: str) -> None:
    if not condition:
        raise DlibFormatError(message)


def _con(reader: Reader, layer: Layer) -> None:
    spec = layer.spec
    layer.name = reader.expect(("con_4", "con_5", "con_6"), "a con_ layer")
    _, params = reader.tensor()
    num_filters = reader.integer()
    nr, nc = reader.integer(), reader.integer()
    stride_y, stride_x = reader.integer(), reader.integer()
    pad_y, pad_x = reader.integer(), reader.integer()
    filters = reader.alias()
    biases = reader.alias()
    for _ in range(4):  # learning rate and weight decay multipliers: training only
        reader.real()
    use_bias = reader.boolean() if layer.name in ("con_5", "con_6") else True
    layer.relu_after = reader.boolean() if layer.name == "con_6" else False
    # dlib's default padding: size/2 at stride 1, none otherwise (dlib/dnn/layers.h).
    padding = spec.size // 2 if spec.stride == 1 else 0
    check((num_filters, nr, nc, stride_y, stride_x) ==
           (spec.filters, spec.size, spec.size, spec.stride, spec.stride)
           and (pad_y, pad_x) == (padding, padding),
           f"con layer {(num_filters, nr, nc, stride_y, stride_x, pad_y, pad_x)} does not "
           f"match the template {spec}")
    check(filters[0] == num_filters and filters[2:] == (nr, nc),
           f"con filters {filters} do not match {num_filters} x {nr} x {nc}")
    n_weights = filters[0] * filters[1] * filters[2] * filters[3]
    n_bias = biases[0] * biases[1] * biases[2] * biases[3] if use_bias else 0
    check(params.size == n_weights + n_bias and (not use_bias or n_bias == num_filters),
           f"con parameters hold {params.size} values, expected {n_weights} + {n_bias}")
    # dlib's params: the filters (num_filters, k, nr, nc, row-major), then the biases.
    layer.weights = params[:n_weights].reshape(filters)
    layer.bias = params[n_weights:] if use_bias else np.zeros(num_filters, np.float32)
    layer.padding = padding


def _batch_norm(reader: Reader, layer: Layer) -> None:
    """A bn_con2/bn_fc2 record read as the affine_ dlib makes of it when it loads one into
    an affine_ layer (layers.h, affine_(const bn_&)): gamma / sqrt(running variance +
    eps) and beta - that * running mean, in float like dlib. Record: params, gamma and
    beta aliases, means, invstds, running means, running variances (tensors),
    num_updates and the window size (integers), four multipliers and eps (doubles)."""
    _, params = reader.tensor()
    gamma = reader.alias()
    beta = reader.alias()
    reader.tensor()  # means: training only
    reader.tensor()  # invstds: training only
    _, running_means = reader.tensor()
    _, running_variances = reader.tensor()
    reader.integer(signed=False)
    reader.integer(signed=False)
    for _ in range(4):
        reader.real()
    eps = np.float32(reader.real())
    check(gamma == beta and gamma[0] == 1, f"bn gamma {gamma} and beta {beta}")
    size = gamma[0] * gamma[1] * gamma[2] * gamma[3]
    check(params.size == 2 * size and running_means.size == size
          and running_variances.size == size,
          f"bn parameters hold {params.size}/{running_means.size}/{running_variances.size} "
          f"values, gamma {gamma}")
    scale = params[:size] / np.sqrt(running_variances + eps)
    layer.gamma = scale.astype(np.float32).reshape(gamma)
    layer.beta = (params[size:] - scale * running_means).astype(np.float32).reshape(gamma)


def _affine(reader: Reader, layer: Layer) -> None:
    layer.name = reader.expect(("affine_", "affine_2", "bn_con2", "bn_fc2"), "an affine_ layer")
    if layer.name.startswith("bn_"):
        _batch_norm(reader, layer)
        return
    _, params = reader.tensor()
    gamma = reader.alias()
    beta = reader.alias()
    mode = reader.integer()
    layer.disabled = reader.boolean() if layer.name == "affine_2" else False
    check(mode in (0, 1), f"affine mode {mode} unknown")
    check(gamma == beta, f"affine gamma {gamma} and beta {beta} differ in shape")
    size = gamma[0] * gamma[1] * gamma[2] * gamma[3]
    if layer.disabled:
        return
    check(params.size == 2 * size and gamma[0] == 1,
           f"affine parameters hold {params.size} values, gamma {gamma}")
    # CONV_MODE (0): one gamma/beta per channel, alias (1, k, 1, 1); FC_MODE (1): one per
    # value, (1, k, nr, nc). Either broadcasts over the batch as stored.
    layer.gamma = params[:size].reshape(gamma)
    layer.beta = params[size:].reshape(gamma)


def _pool(reader: Reader, layer: Layer, name: str) -> None:
    spec = layer.spec
    layer.name = reader.expect((name,), f"a {name} layer")
    nr, nc = reader.integer(), reader.integer()
    stride_y, stride_x = reader.integer(), reader.integer()
    pad_y, pad_x = reader.integer(), reader.integer()
    padding = spec.size // 2 if spec.stride == 1 else 0
    check((nr, nc, stride_y, stride_x, pad_y, pad_x) ==
           (spec.size, spec.size, spec.stride, spec.stride, padding, padding),
           f"{name} {(nr, nc, stride_y, stride_x, pad_y, pad_x)} does not match {spec}")
    layer.padding = padding


def _fc(reader: Reader, layer: Layer) -> None:
    layer.name = reader.expect(("fc_2", "fc_3"), "an fc_ layer")
    outputs = reader.integer(signed=False)
    inputs = reader.integer(signed=False)
    _, params = reader.tensor()
    weights = reader.alias()
    reader.alias()  # biases: none for fc_no_bias
    bias_mode = reader.integer()
    for _ in range(4):
        reader.real()
    if layer.name == "fc_3":
        reader.boolean()
    check(outputs == layer.spec.filters, f"fc has {outputs} outputs, expected "
           f"{layer.spec.filters}")
    check(bias_mode == 1, "fc layer has a bias; the template is fc_no_bias")
    check(weights[:2] == (inputs, outputs) and params.size == inputs * outputs,
           f"fc weights {weights} / {params.size} values do not match {inputs} x {outputs}")
    # y = x @ W with W stored (num_inputs, num_outputs) row-major (dlib fc_::forward).
    layer.weights = params.reshape(inputs, outputs)


def _relu(reader: Reader, layer: Layer) -> None:
    layer.name = reader.expect(("relu_", "relu_2"), "a relu_ layer")
    layer.disabled = reader.boolean() if layer.name == "relu_2" else False


def _input(reader: Reader, layer: Layer) -> None:
    layer.name = reader.expect(("input_rgb_image_sized",), "the input layer")
    layer.mean = (reader.single(), reader.single(), reader.single())
    nr, nc = reader.integer(signed=False), reader.integer(signed=False)
    check((nr, nc) == (CHIP_SIZE, CHIP_SIZE), f"input size {nr}x{nc}, expected 150x150")


def _loss(reader: Reader, layer: Layer) -> None:
    layer.name = reader.expect(("loss_metric_2", "loss_metric_"), "the loss layer")
    if layer.name == "loss_metric_2":
        layer.extra = {"margin": reader.single(), "dist_thresh": reader.single()}


def _details(reader: Reader, layer: Layer) -> None:
    kind = layer.spec.kind
    if kind == "con":
        _con(reader, layer)
    elif kind == "affine":
        _affine(reader, layer)
    elif kind == "relu":
        _relu(reader, layer)
    elif kind == "max_pool":
        _pool(reader, layer, "max_pool_2")
    elif kind == "avg_pool":
        _pool(reader, layer, "avg_pool_2")
    elif kind == "fc":
        _fc(reader, layer)
    elif kind == "add_prev":
        layer.name = reader.expect(("add_prev_",), "an add_prev_ layer")
    else:  # not reached: tag/skip/input/loss are read by _layer
        raise DlibFormatError(f"no details for {kind}")


# Reads the details of a network's input or loss layer (they differ between networks).
DetailsReader = Callable[[Reader, Layer], None]


@dataclass(frozen=True)
class _Ends:
    read_input: DetailsReader
    read_loss: DetailsReader


def _layer(reader: Reader, layers: list[Layer], index: int, ends: _Ends) -> None:
    """Read layer `index` and everything below it, as dlib's nested serialize() wrote
    them (dlib/dnn/core.h: add_layer, add_tag_layer, add_skip_layer, add_loss_layer)."""
    layer = layers[index]
    kind = layer.spec.kind
    version = reader.integer()
    if kind == "loss":
        check(version == 1, f"loss layer version {version}")
        ends.read_loss(reader, layer)
        _layer(reader, layers, index + 1, ends)
        return
    if kind in ("tag", "skip"):
        check(version == 1, f"{kind} layer {index} version {version}")
        _layer(reader, layers, index + 1, ends)
        return
    if layers[index + 1].spec.kind == "input":
        # add_layer over the input layer: input, details, three flags, then the x_grad,
        # cached_output and grad_final tensors (training state, skipped), and from
        # version 3 the sample expansion factor.
        check(version in (2, 3), f"first layer version {version}")
        ends.read_input(reader, layers[index + 1])
        _details(reader, layer)
        for _ in range(3):
            reader.boolean()
        for _ in range(3):
            reader.tensor()
        if version == 3:
            reader.integer(signed=False)
        return
    check(version in (1, 2), f"layer {index} ({kind}) version {version}")
    _layer(reader, layers, index + 1, ends)
    _details(reader, layer)
    for _ in range(3):
        reader.boolean()
    reader.tensor()  # x_grad
    reader.tensor()  # cached_output
    if version == 2:
        reader.tensor()  # params_grad


def read_layers(data: bytes, architecture: tuple[Spec, ...], *, read_input: DetailsReader,
                read_loss: DetailsReader) -> list[Layer]:
    """The layers of a network file, in `architecture` order (outermost first), the
    input and loss layers' details read by the given functions."""
    layers = [Layer(spec) for spec in architecture]
    reader = Reader(data)
    _layer(reader, layers, 0, _Ends(read_input, read_loss))
    check(reader.at_end, f"{len(data) - reader.pos} unread bytes after the network")
    return layers


def read_network(data: bytes) -> list[Layer]:
    """The layers of `dlib_face_recognition_resnet_model_v1.dat`, in ARCHITECTURE order."""
    return read_layers(data, ARCHITECTURE, read_input=_input, read_loss=_loss)
