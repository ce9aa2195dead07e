"""Word counts K that the random conv cases (tests/kernels/cases.py, K = taps * words <= 245) do
not reach, on every kernel path: the Harley-Seal kernels (avx512bw, avx2) count 8 words per
carry-save block, seed their state with the K % 8 words past the last block, use a plain table
loop below 9 (avx512bw) or 27 (avx2) words, run 16 rows per call as 4-row (avx512bw) or 2-row x
half-panel (avx2) tiles, and fold their byte counters into 64-bit sums every 31 blocks (248
words); the byte-table loops fold every 31 words. A mistake at any of these boundaries shows at K
around multiples of 8, 31 and 248 and at the table / Harley-Seal switch, and all-ones operands
(every bit counted) are what overflows a byte counter. Each K is one 1x1 conv (linear) with 64 * K - d input channels (d > 0: a channel tail of
zero bits), compared with float64 sums and, for the all-ones operands, with the count by hand."""
import pytest
import torch

import hwq.kernels as K
from hwq.kernels import reference as R

needs_ext = pytest.mark.skipif(not K.HAVE_EXTENSION, reason="hwq._C is not built")

# Word counts: the table loops (< 9, < 27), one block + 0..7 seed words, 2 and 3 blocks, one byte-flush
# chunk of 31 blocks and its neighbours, 2 and 3 chunks, and long rows with every tail.
WORDS = ([1, 2, 3, 5, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 23, 24, 25, 26, 27, 28, 30, 31,
          32, 33]
         + [247, 248, 249, 255, 256, 257, 495, 496, 497, 503, 504, 505, 744, 745, 751]
         + [1000, 1003, 1021])
ROWS = 9   # not a multiple of any path's row tile: padded rows are counted and thrown away
OUT = 13   # two panels, the second one partly padded


def _channels(words: int) -> list[int]:
    return [64 * words, 64 * words - 37] if words > 1 else [64, 27]


@needs_ext
def test_binary_word_counts_on_every_path():
    gen = torch.Generator().manual_seed(31)
    for isa in K.available_isas():
        with K.use_isa(isa):
            for words in WORDS:
                for c in _channels(words):
                    x = torch.randint(0, 2, (ROWS, c), generator=gen).float() * 2 - 1
                    w = torch.randint(0, 2, (OUT, c), generator=gen).float() * 2 - 1
                    y = K.binary_linear(x, w)
                    assert torch.equal(y.double(), x.double() @ w.double().T), (isa, words, c)
                    # All-ones XOR: x = -1 (bit 1) against w = +1 (bit 0): every bit differs,
                    # sum -c; x = w = -1: no bit differs, sum +c.
                    w_mixed = torch.ones(OUT, c)
                    w_mixed[::2] = -1
                    want = torch.where(torch.arange(OUT) % 2 == 0, c, -c).expand(ROWS, OUT)
                    y = K.binary_linear(torch.full((ROWS, c), -1.0), w_mixed)
                    assert torch.equal(y, want.int()), (isa, words, c)


@needs_ext
@pytest.mark.parametrize("a_bits,w_bits", [(1, 1), (2, 3), (3, 2), (1, 8)])
def test_bitserial_word_counts_on_every_path(a_bits, w_bits):
    # AND counts with every coefficient sign: w_bits >= 2 has a negative plane (the sign bit) and
    # positive ones, shifted by up to a_bits + w_bits - 2.
    gen = torch.Generator().manual_seed(32 + a_bits * 8 + w_bits)
    top = 2 ** a_bits - 1
    for isa in K.available_isas():
        with K.use_isa(isa):
            for words in WORDS:
                if words * 64 * top * 2 ** (w_bits - 1) >= 2 ** 31:
                    continue  # refused by the int32 bound (tested elsewhere)
                for c in _channels(words):
                    x = torch.randint(0, top + 1, (ROWS, c), generator=gen).float()
                    w = torch.randint(-2 ** (w_bits - 1), 2 ** (w_bits - 1), (OUT, c),
                                      generator=gen).float()
                    y = K.bitserial_linear(x, w, a_bits, w_bits)
                    assert torch.equal(y.double(), x.double() @ w.double().T), (isa, words, c)
                    # All-ones AND: every activation bit set (x = 2^a - 1) against w = -1 (every
                    # weight bit set): each plane pair counts all c bits.
                    y = K.bitserial_linear(torch.full((ROWS, c), float(top)),
                                           torch.full((OUT, c), -1.0), a_bits, w_bits)
                    assert torch.equal(y, torch.full((ROWS, OUT), -top * c, dtype=torch.int32)), (
                        isa, words, c)


@needs_ext
def test_word_counts_against_the_reference_ops():
    # The same path as above through the packed reference (bit planes, float64 matmuls), so the
    # test does not rest on torch's float matmul alone.
    gen = torch.Generator().manual_seed(33)
    for words in [9, 249, 505]:
        c = 64 * words - 5
        x = torch.randint(0, 4, (3, c), generator=gen).float()
        w = torch.randint(-2, 2, (5, c), generator=gen).float()
        assert torch.equal(K.bitserial_linear(x, w, 2, 2).long(), R.bitserial_linear_ref(x, w, 2, 2))
        xb, wb = x.remainder(2) * 2 - 1, w.remainder(2) * 2 - 1
        assert torch.equal(K.binary_linear(xb, wb).long(), R.binary_linear_ref(xb, wb))
