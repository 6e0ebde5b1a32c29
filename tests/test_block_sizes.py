"""BlockSizes of the Pallas selective scan: every field checked when the value is built."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxmamba.errors import ScanError
from jaxmamba.kernels.pallas_common import BlockSizes

INTS = [f.name for f in dataclasses.fields(BlockSizes) if f.type in ("int", int)]
FLAGS = [f.name for f in dataclasses.fields(BlockSizes) if f.type in ("bool", bool)]
POW2 = ["block_d", "block_l", "chunk", "block_d_bwd", "num_warps", "num_warps_bwd", "align_l"]


def allowed(kw: dict) -> bool:
    """The rule, written out independently of the class."""
    v = {f.name: f.default for f in dataclasses.fields(BlockSizes)} | kw
    for name in INTS:
        x = v[name]
        if type(x) is not int or x < 1:
            return False
    if any(type(v[name]) is not bool for name in FLAGS):
        return False
    if any(bin(v[name]).count("1") != 1 for name in POW2):
        return False
    return (
        v["chunk"] % v["block_l"] == 0
        and v["tpu_block_d"] % 8 == 0
        and (v["tpu_block_l"] % 128 == 0)
    )


def test_fields_are_covered():
    assert len(INTS) == 10 and FLAGS == ["prefetch", "tiles_n1"]
    assert set(POW2) <= set(INTS)


@pytest.mark.parametrize("n", [1, 2, 16])
@pytest.mark.parametrize("l", [None, 1, 49, 256, 257, 3136])
def test_defaults_are_valid(n, l):
    bs = BlockSizes.get_default(n, l)
    assert allowed(dataclasses.asdict(bs))
    bs.validate()  # still callable, and passes


@pytest.mark.parametrize("name", INTS)
@pytest.mark.parametrize("bad", [0, -8, True, 8.0, "8", None])
def test_non_positive_ints_are_refused_by_name(name, bad):
    with pytest.raises(ScanError, match=rf"BlockSizes\.{name} must be a positive int"):
        BlockSizes(**{name: bad})


@pytest.mark.parametrize("name", FLAGS)
@pytest.mark.parametrize("bad", [1, 0, "yes", None])
def test_flags_must_be_bools(name, bad):
    with pytest.raises(ScanError, match=rf"BlockSizes\.{name} must be True or False"):
        BlockSizes(**{name: bad})


@pytest.mark.parametrize("name", POW2)
def test_powers_of_two(name):
    with pytest.raises(ScanError, match=rf"BlockSizes\.{name} must be a power of 2, got 12"):
        BlockSizes(**{name: 12})


def test_the_other_rules_name_the_field():
    with pytest.raises(ScanError, match="chunk=8 must be a multiple of block_l=16"):
        BlockSizes(block_l=16, chunk=8)
    with pytest.raises(ScanError, match="tpu_block_d must be a multiple of 8, got 12"):
        BlockSizes(tpu_block_d=12)
    with pytest.raises(ScanError, match="tpu_block_l must be a multiple of 128, got 100"):
        BlockSizes(tpu_block_l=100)
    BlockSizes(num_stages=3, tpu_block_d=24, tpu_block_l=384)  # not powers of two: allowed


def test_replace_is_checked_too_and_the_error_is_a_value_error():
    bs = BlockSizes()
    with pytest.raises(ValueError, match="block_d must be a power of 2"):
        dataclasses.replace(bs, block_d=48)
    assert dataclasses.replace(bs, block_d=64).block_d == 64


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(INTS + FLAGS),
        st.one_of(st.integers(-4, 300), st.booleans()),
        max_size=4,
    )
)
def test_built_iff_the_rule_allows(kw):
    if allowed(kw):
        bs = BlockSizes(**kw)
        assert all(getattr(bs, k) == v for k, v in kw.items())
    else:
        with pytest.raises(ScanError, match=r"BlockSizes\."):
            BlockSizes(**kw)
