"""The bf16-vs-float32 projection probe of ``benchmarks/bench_finetune.py``: it says whether the
CPU has native bf16 and how a bf16 product's time compares, before a training run would."""

from __future__ import annotations

import pytest


def test_the_matmul_probe_reports_both_dtypes_and_the_cpu_flags(benchmark_script) -> None:
    pytest.importorskip("torch")
    from beliefagent.adapters.models import cpu_has_native_bf16

    bench = benchmark_script("bench_finetune")
    probe = bench.matmul_probe(threads=1, seconds=0.01, tokens=64)
    assert probe["native_bf16"] is cpu_has_native_bf16()
    for dtype in ("float32", "bfloat16"):
        assert probe["matmul_ms"][dtype]["forward_ms"] > 0
        assert probe["matmul_ms"][dtype]["input_grad_ms"] > 0
    times = probe["matmul_ms"]
    assert probe["bf16_matmul_speedup"] == pytest.approx(
        times["float32"]["forward_ms"] / times["bfloat16"]["forward_ms"], rel=0.05
    )
