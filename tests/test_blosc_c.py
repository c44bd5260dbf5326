"""C-Blosc2's Blosc 1 writer: chunks any c-blosc 1 reader decodes, from many threads,
and a clean fall-back to c-blosc 1 where C-Blosc2 cannot be used."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from omestream.backends import blosc_c
from omestream.backends.codecs import BLOSC_BLOCKSIZE, codec_choice

pytest.importorskip("blosc2")
if blosc_c._library() is None:
    pytest.skip("blosc2's C-Blosc2 has no Blosc 1 writer here", allow_module_level=True)


def _camera_like(shape: tuple[int, ...], dtype: str, seed: int) -> np.ndarray:
    """Smooth background, shot noise and a few saturated pixels."""
    rng = np.random.default_rng(seed)
    yy, xx = np.indices(shape[-2:])
    base = 400 + 300 * np.sin(xx / 17.0) * np.cos(yy / 23.0)
    img = rng.poisson(np.broadcast_to(base, shape)).astype(np.float64)
    img.flat[rng.integers(0, img.size, 20)] = 4000
    return img.astype(dtype)


@pytest.fixture
def fresh_caches() -> Iterator[None]:
    """The library and encoders are looked up once per process; tests that change
    what the lookup finds start and end with empty caches."""
    blosc_c._library.cache_clear()
    blosc_c.blosc1_encoder.cache_clear()
    yield
    blosc_c._library.cache_clear()
    blosc_c.blosc1_encoder.cache_clear()


@pytest.mark.parametrize("cname", ["zstd", "lz4", "blosclz", "zlib"])
@pytest.mark.parametrize("shuffle", ["bitshuffle", "shuffle", "noshuffle"])
@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32", "uint64"])
def test_chunks_decode_with_c_blosc_1(cname: str, shuffle: str, dtype: str) -> None:
    import imagecodecs
    from numcodecs import Blosc

    encoder = blosc_c.blosc1_encoder(cname, 1, shuffle, np.dtype(dtype).itemsize, BLOSC_BLOCKSIZE)
    assert encoder is not None
    # a chunk smaller than a block, one of several blocks, and one with a ragged tail
    for shape in ((37, 41), (1, 512, 512), (3, 300, 257)):
        data = _camera_like(shape, dtype, seed=len(shape))
        chunk = encoder.encode(data)
        assert chunk[0] == 2  # Blosc 1 format version 2 (C-Blosc2 writes 5 in its own)
        for decoded in (Blosc().decode(chunk), imagecodecs.blosc_decode(chunk)):
            np.testing.assert_array_equal(np.frombuffer(decoded, dtype).reshape(shape), data)


@pytest.mark.parametrize("cname", ["zstd", "lz4"])
def test_the_same_size_as_c_blosc_1_writes(cname: str) -> None:
    import imagecodecs

    data = _camera_like((512, 512), "uint16", seed=5)
    encoder = blosc_c.blosc1_encoder(cname, 1, "bitshuffle", 2, BLOSC_BLOCKSIZE)
    assert encoder is not None
    theirs = imagecodecs.blosc_encode(
        data, level=1, compressor=cname, shuffle="bitshuffle", typesize=2,
        blocksize=BLOSC_BLOCKSIZE, numthreads=1,
    )  # fmt: skip
    # the same codec and settings: zstd gives the same size; lz4 blocks may be split
    # into byte streams differently (the header says which), within a few percent
    assert abs(len(encoder.encode(data)) - len(theirs)) <= 0.03 * len(theirs)


def test_threads_encode_at_once_into_their_own_buffers() -> None:
    encoder = blosc_c.blosc1_encoder("zstd", 1, "bitshuffle", 2, BLOSC_BLOCKSIZE)
    assert encoder is not None
    chunks = [_camera_like((256, 256), "uint16", seed=k) for k in range(24)]
    serial = [encoder.encode(c) for c in chunks]

    def into(c: np.ndarray) -> bytes:
        out = memoryview(bytearray(c.nbytes + encoder.max_overhead))
        return bytes(out[: encoder.encode_into(c, out)])

    with ThreadPoolExecutor(4) as pool:
        for _ in range(3):
            assert list(pool.map(into, chunks)) == serial


def test_a_chunk_encodes_alike_whatever_was_encoded_before() -> None:
    # C-Blosc2 contexts keep the block size a smaller chunk was clamped to
    big = _camera_like((512, 512), "uint16", seed=7)
    small = _camera_like((40, 40), "uint16", seed=8)
    first = blosc_c.Blosc1Encoder(blosc_c._library(), "zstd", 1, "bitshuffle", 2, BLOSC_BLOCKSIZE)
    second = blosc_c.Blosc1Encoder(blosc_c._library(), "zstd", 1, "bitshuffle", 2, BLOSC_BLOCKSIZE)
    alone = first.encode(big)
    second.encode(small)
    assert second.encode(big) == alone
    assert int.from_bytes(alone[8:12], "little") == big.nbytes  # one block: the whole chunk


def test_a_too_small_buffer_is_refused() -> None:
    encoder = blosc_c.blosc1_encoder("zstd", 1, "bitshuffle", 2, BLOSC_BLOCKSIZE)
    assert encoder is not None
    data = np.zeros((64, 64), np.uint16)
    with pytest.raises(ValueError, match="max_overhead longer"):
        encoder.encode_into(data, memoryview(bytearray(data.nbytes)))


def test_a_chunk_over_2_gib_is_refused_before_any_copy() -> None:
    encoder = blosc_c.blosc1_encoder("zstd", 1, "bitshuffle", 1, BLOSC_BLOCKSIZE)
    assert encoder is not None
    # a broadcast view: 2 GiB long without 2 GiB of memory
    huge = np.broadcast_to(np.zeros(1, np.uint8), (2**31,))
    with pytest.raises(ValueError, match=r"at most \d+ bytes, not 2147483648: choose smaller"):
        encoder.encode_into(huge, memoryview(bytearray(64)))


def test_streams_use_it_by_default() -> None:
    assert isinstance(codec_choice("blosc-zstd").encoder("uint16"), blosc_c.Blosc1Encoder)
    # codecs Blosc 1 cannot hold have no C-Blosc2 path
    assert not isinstance(codec_choice("zstd").encoder("uint16"), blosc_c.Blosc1Encoder)


def test_a_broken_library_falls_back_to_c_blosc_1(
    fresh_caches: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from numcodecs import Blosc

    broken = tmp_path / "libblosc2.so"
    broken.write_bytes(b"not a shared library")
    monkeypatch.setattr(blosc_c, "_library_file", lambda: broken)
    encoder = codec_choice("blosc-zstd").encoder("uint16")
    assert not isinstance(encoder, blosc_c.Blosc1Encoder)
    data = _camera_like((64, 64), "uint16", seed=1)
    decoded = np.frombuffer(Blosc().decode(encoder.encode(data)), np.uint16)
    np.testing.assert_array_equal(decoded.reshape(data.shape), data)


def test_a_library_that_writes_other_chunks_is_not_used(
    fresh_caches: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # as if another C-Blosc2 wrote chunks c-blosc 1 reads differently: the check on
    # first use notices and the encoder is not used
    real = blosc_c.Blosc1Encoder.encode_into

    def corrupting(self: blosc_c.Blosc1Encoder, data: np.ndarray, out: memoryview) -> int:
        n = real(self, data, out)
        out[n - 1] ^= 0xFF
        return n

    monkeypatch.setattr(blosc_c.Blosc1Encoder, "encode_into", corrupting)
    assert blosc_c.blosc1_encoder("zstd", 1, "bitshuffle", 2, BLOSC_BLOCKSIZE) is None


@pytest.mark.parametrize("text", [b"2.15.1", b"4.0.0", b"3.3.9"])
def test_versions_without_this_writer_are_refused(text: bytes) -> None:
    assert not blosc_c._SUPPORTED[0] <= blosc_c._version(text) < blosc_c._SUPPORTED[1]


def test_versions_with_it_are_accepted() -> None:
    for text in (b"3.4.0", b"3.6.1", b"3.10.2.dev"):
        assert blosc_c._SUPPORTED[0] <= blosc_c._version(text) < blosc_c._SUPPORTED[1]
