"""Label Studio's brush RLE: the run-length bit stream its editor stores masks in (not COCO RLE).

The format (thi.ng's `rle-pack`, which the editor uses; `label_studio_sdk.converter.brush` reads and writes
it too) is a big-endian bit stream over the image's RGBA bytes, row-major:

- a header: the number of values (32 bits), the word size minus one (5 bits), and four run-length field
  widths minus one (4 bits each; the editor writes 8-bit words and widths 3, 4, 8, 16);
- then blocks until that many values are out: a flag bit (1: one value repeated, 0: literal values), 2
  bits choosing one of the four widths, the block's length minus one in that many bits, then one word
  (a repeat) or that many words (literals).

The editor draws a pixel where its alpha byte is non-zero and writes every channel equal to alpha; we write
255 in all four channels of a mask's pixels and read a pixel as in when its alpha is at least half
(`THRESHOLD`: anti-aliased brush edges are partly transparent).

Encoding is vectorised over the mask's runs (four channels of a pixel are one run of four values). Decoding
walks the blocks, which the format chains one after another, in a loop over blocks (runs), never over
pixels; the values are then laid out in one vectorised pass.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

WORD_BITS = 8
RUN_WIDTHS = (3, 4, 8, 16)
"""Bit widths of a block's length, as the editor writes them."""
THRESHOLD = 128
"""Alpha from which a decoded pixel belongs to the mask."""
_HEADER_BITS = 32 + 5 + 4 * 4
_MAX_RUN = 1 << RUN_WIDTHS[-1]


def encode_mask(mask: np.ndarray) -> list[int]:
    """A (H, W) mask as Label Studio's brush RLE (a list of byte values, as results carry it in JSON)."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"a mask is 2-D (H, W), got shape {mask.shape}")
    flat = mask.ravel().astype(bool, copy=False).view(np.uint8)
    values, lengths = _runs(flat)
    return _pack(values * np.uint8(255), lengths * 4, flat.size * 4)


def encode(values: np.ndarray) -> list[int]:
    """Any sequence of byte values (e.g. RGBA image bytes) as brush RLE."""
    flat = np.ascontiguousarray(values, dtype=np.uint8).ravel()
    return _pack(*_runs(flat), flat.size)


def _runs(flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The value and length of each run of equal values."""
    if flat.size == 0:
        return flat[:0], np.zeros(0, dtype=np.int64)
    starts = np.concatenate([[0], np.flatnonzero(flat[1:] != flat[:-1]) + 1])
    return flat[starts], np.diff(np.append(starts, flat.size))


def _pack(values: np.ndarray, lengths: np.ndarray, count: int) -> list[int]:
    """Repeat blocks for the runs (a run longer than the widest length field takes several), bit-packed."""
    pieces = -(-lengths // _MAX_RUN)  # blocks per run
    block_values = np.repeat(values, pieces).astype(np.uint64)
    block_lengths = np.full(int(pieces.sum()), _MAX_RUN, dtype=np.int64)
    block_lengths[np.cumsum(pieces) - 1] = lengths - (pieces - 1) * _MAX_RUN  # each run's last block: the rest
    n = block_lengths - 1
    choice = (n >= 1 << RUN_WIDTHS[0]).astype(np.int64) + (n >= 1 << RUN_WIDTHS[1]) + (n >= 1 << RUN_WIDTHS[2])
    width = np.asarray(RUN_WIDTHS, dtype=np.int64)[choice]
    codes = ((((np.uint64(1) << np.uint64(2)) | choice.astype(np.uint64)) << width.astype(np.uint64)
              | n.astype(np.uint64)) << np.uint64(WORD_BITS)) | block_values
    bits = 3 + width + WORD_BITS
    header = [(count, 32), (WORD_BITS - 1, 5), *((w - 1, 4) for w in RUN_WIDTHS)]
    codes = np.concatenate([np.array([c for c, _ in header], dtype=np.uint64), codes])
    bits = np.concatenate([np.array([b for _, b in header], dtype=np.int64), bits])
    return _write_bits(codes, bits)


def _write_bits(codes: np.ndarray, bits: np.ndarray) -> list[int]:
    """Concatenate codes of the given bit lengths (each at most 32), most significant bit first.

    Each code lands in one 64-bit word or straddles two; codes never overlap, so a word is the sum of the
    parts that land in it, summed per word with `add.reduceat` (positions are sorted).
    """
    ends = np.cumsum(bits)
    total = int(ends[-1]) if len(ends) else 0
    starts = ends - bits
    word, offset = starts // 64, starts % 64
    spill = np.maximum(offset + bits - 64, 0)  # bits that go to the next word
    head = (codes >> spill.astype(np.uint64)) << (64 - offset - bits + spill).astype(np.uint64)
    words = np.zeros(total // 64 + 2, dtype=np.uint64)
    _add_sorted(words, word, head)
    spilled = np.flatnonzero(spill)
    tail = (codes[spilled] & ((np.uint64(1) << spill[spilled].astype(np.uint64)) - np.uint64(1))) \
        << (64 - spill[spilled]).astype(np.uint64)
    _add_sorted(words, word[spilled] + 1, tail)
    return np.frombuffer(words.astype(">u8").tobytes()[:-(-total // 8)], dtype=np.uint8).tolist()


def _add_sorted(words: np.ndarray, index: np.ndarray, parts: np.ndarray) -> None:
    if len(index):
        first = np.concatenate([[0], np.flatnonzero(index[1:] != index[:-1]) + 1])
        words[index[first]] += np.add.reduceat(parts, first)


def decode(rle: Sequence[int] | bytes) -> np.ndarray:
    """The values a brush RLE holds (RGBA bytes for an image), as the editor's decoder reads them.

    The array's dtype follows the header's word size (uint8 up to 8 bits, uint16, uint32), as in `rle-pack`.
    Raises ValueError on a stream that ends before its values do.
    """
    data = bytes(rle)
    total_bits = len(data) * 8
    padded = data + bytes(8)
    if total_bits < _HEADER_BITS:
        raise ValueError("brush RLE: shorter than its header")
    header = int.from_bytes(data[:7], "big") >> 3  # the first 53 bits
    count, word = header >> 21, ((header >> 16) & 31) + 1
    widths = [((header >> (12 - 4 * k)) & 15) + 1 for k in range(4)]
    dtype = np.uint8 if word <= 8 else np.uint16 if word <= 16 else np.uint32
    position, done = _HEADER_BITS, 0
    block_values: list[int] = []
    block_lengths: list[int] = []
    literals: list[tuple[int, int, int]] = []  # (first value index, count, bit position)
    from_bytes, word_mask, all_bits = int.from_bytes, (1 << word) - 1, (1 << 64) - 1
    while done < count:
        # one 64-bit window per block, its first bit at `position`: flag, width choice, length and a repeated
        # value fit in it (3 + 16 + 32 bits at most)
        window = (from_bytes(padded[position >> 3:(position >> 3) + 8], "big") << (position & 7)) & all_bits
        width = widths[(window >> 61) & 3]
        length = ((window >> (61 - width)) & ((1 << width) - 1)) + 1
        position += 3 + width
        if window >> 63:
            block_values.append((window >> (61 - width - word)) & word_mask)
            position += word
        else:
            block_values.append(0)
            literals.append((done, length, position))
            position += length * word
        block_lengths.append(length)
        done += length
        if position > total_bits:
            raise ValueError(f"brush RLE: the stream ends after {done} of its {count} values")
    out = np.repeat(np.asarray(block_values, dtype=dtype), block_lengths)[:count]
    if literals:
        _fill_literals(out, literals, padded, word)
    return out


def _fill_literals(out: np.ndarray, literals: list[tuple[int, int, int]], padded: bytes, word: int) -> None:
    """Read every literal word at once: one gather of `word` bits per value from the unpacked stream."""
    first, counts, positions = (np.asarray(column, dtype=np.int64) for column in zip(*literals))
    which = np.repeat(np.arange(len(counts)), counts)
    within = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
    bit = (positions[which] + within * word)[:, None] + np.arange(word)
    values = np.unpackbits(np.frombuffer(padded, dtype=np.uint8))[bit].astype(np.uint64) \
        @ (np.uint64(1) << np.arange(word - 1, -1, -1, dtype=np.uint64))
    index = first[which] + within
    keep = index < out.size
    out[index[keep]] = values[keep].astype(out.dtype)


def decode_mask(rle: Sequence[int] | bytes, height: int, width: int) -> np.ndarray:
    """The (H, W) bool mask of a brush RLE over an image of that size (alpha at least `THRESHOLD`)."""
    values = decode(rle)
    if values.size != height * width * 4:
        raise ValueError(f"brush RLE holds {values.size} values; a {width}x{height} RGBA image has "
                         f"{height * width * 4}")
    return values.reshape(height, width, 4)[:, :, 3] >= THRESHOLD
