"""dlib's byte formats as the converter reads them (dlib/serialize.h, float_details.h,
cuda/tensor.h). The byte strings are written out by hand from those definitions; the
first ones are copied from the header of dlib_face_recognition_resnet_model_v1.dat."""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest

from faceapi.adapters.engines.local.dlib_format import (
    ARCHITECTURE,
    DlibFormatError,
    Reader,
    read_network,
)


def test_integers_are_a_size_byte_then_little_endian_magnitude_bytes() -> None:
    reader = Reader(b"\x01\x96" + b"\x01\x00" + b"\x03\x62\x90\xf5" + b"\x81\x11"
                     + b"\x02\x00\x01")
    assert reader.integer(signed=False) == 150
    assert reader.integer() == 0
    assert reader.integer() == 0xF59062
    assert reader.integer() == -17  # 0x80: negative
    assert reader.integer() == 256
    assert reader.at_end


@pytest.mark.parametrize("data", [b"\x00", b"\x09" + b"\x00" * 9, b"\x11\x01", b"\x03\x01"])
def test_a_bad_size_byte_or_a_short_integer_is_refused(data: bytes) -> None:
    with pytest.raises(DlibFormatError):
        Reader(data).integer()


def test_a_negative_value_where_dlib_writes_an_unsigned_integer_is_refused() -> None:
    with pytest.raises(DlibFormatError, match="negative"):
        Reader(b"\x81\x05").integer(signed=False)


def test_floats_are_mantissa_times_two_to_the_exponent() -> None:
    # input_rgb_image_sized's average red, as the model file holds it.
    assert Reader(b"\x03\x62\x90\xf5\x81\x11").single() == np.float32(122.782)
    # loss_metric's margin 0.04 (mantissa 0xa3d70a, exponent -28).
    assert Reader(b"\x03\x0a\xd7\xa3\x81\x1c").single() == np.float32(0.04)
    assert Reader(b"\x01\x00\x01\x00").real() == 0.0
    # The exponent sentinels 32000/32001/32002 stand for +inf, -inf and NaN.
    assert Reader(b"\x01\x00\x02\x00\x7d").real() == math.inf
    assert Reader(b"\x01\x00\x02\x01\x7d").real() == -math.inf
    assert math.isnan(Reader(b"\x01\x00\x02\x02\x7d").real())


def test_bools_are_the_characters_zero_and_one_and_nothing_else() -> None:
    reader = Reader(b"10")
    assert reader.boolean() is True
    assert reader.boolean() is False
    with pytest.raises(DlibFormatError):
        Reader(b"\x01").boolean()


def test_strings_are_a_length_then_the_bytes() -> None:
    assert Reader(b"\x01\x05con_4").string() == "con_4"
    with pytest.raises(DlibFormatError):
        Reader(b"\x01\x09relu").string()


def test_tensors_are_version_two_four_sizes_and_little_endian_float32s() -> None:
    values = struct.pack("<3f", 1.5, -2.0, 0.25)
    reader = Reader(b"\x01\x02" + b"\x01\x01\x01\x03\x01\x01\x01\x01" + values)
    shape, data = reader.tensor()
    assert shape == (1, 3, 1, 1)
    assert data.dtype == np.float32
    assert data.tolist() == [1.5, -2.0, 0.25]
    with pytest.raises(DlibFormatError, match="version"):
        Reader(b"\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01").tensor()
    with pytest.raises(DlibFormatError, match="ends early"):
        Reader(b"\x01\x02\x01\x01\x01\x03\x01\x01\x01\x01" + values[:8]).tensor()


def test_the_architecture_is_dlibs_anet_type() -> None:
    kinds = [spec.kind for spec in ARCHITECTURE]
    assert kinds[0] == "loss"
    assert kinds[-1] == "input"
    convs = [spec for spec in ARCHITECTURE if spec.kind == "con"]
    # 1 stem convolution + 2 per residual block: 1+3+3+4+3 blocks in levels 0 to 4.
    assert len(convs) == 1 + 2 * 14
    assert (convs[-1].filters, convs[-1].size, convs[-1].stride) == (32, 7, 2)
    assert kinds.count("add_prev") == 14
    assert kinds.count("affine") == kinds.count("con") == kinds.count("relu")


def test_a_file_that_is_not_the_network_is_refused() -> None:
    with pytest.raises(DlibFormatError):
        read_network(b"")
    # A loss layer of another name (dlib's loss_mmod_, the face detector's).
    with pytest.raises(DlibFormatError, match="loss"):
        read_network(b"\x01\x01\x01\x0aloss_mmod_")
