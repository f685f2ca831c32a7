"""The Engine page's KV arithmetic: whole blocks per sequence, full prefix blocks held once, what a pool holds."""

from __future__ import annotations

from services.engines import kv_plan

FP32 = 46_080  # the default model's bytes per token in fp32 (30 layers x 3 KV heads x 64 x 2 x 4 bytes)


def test_sixteen_suite_cases_share_their_prefix_blocks():
    plan = kv_plan("fp32", FP32, 16, tokens=1030, sequences=16, shared_prefix=1000)
    assert plan.blocks_per_sequence == 65  # ceil(1030 / 16)
    assert plan.shared_blocks == 62  # only full blocks of the prefix: 62 x 16 = 992 tokens
    assert plan.bytes_unshared == 16 * 65 * 16 * FP32
    assert plan.bytes_shared == (62 + 16 * 3) * 16 * FP32


def test_what_a_pool_holds():
    pool = 100 * 16 * FP32  # 100 blocks
    assert kv_plan("fp32", FP32, 16, 160, 1, 0, pool).fits == 10  # 10 blocks each
    assert kv_plan("fp32", FP32, 16, 160, 1, 128, pool).fits == (100 - 8) // 2  # 8 shared, 2 own each
    assert kv_plan("fp32", FP32, 16, 160, 1, 160, pool).fits == 100 - 10  # all shared: one own block each
    assert kv_plan("fp32", FP32, 16, 2000, 1, 0, pool).fits == 0  # one sequence does not fit


def test_no_sharing_and_no_sequences():
    assert (
        kv_plan("int8", 100, 32, 33, 4, 0).bytes_shared == kv_plan("int8", 100, 32, 33, 4, 0).bytes_unshared
    )
    assert kv_plan("int8", 100, 32, 33, 0, 0).bytes_shared == 0
    assert kv_plan("int8", 100, 32, 33, 4, 0).fits is None
