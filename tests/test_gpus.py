"""GPU assignment: one GPU per node, memory-aware packing, a cap on GPU nodes at once."""
from olivepipe.run.gpus import Gpu, GpuAllocator, parse_gib

H200 = 143771


def test_unestimated_nodes_take_a_whole_gpu_each():
    a = GpuAllocator([Gpu("0", H200), Gpu("1", H200)])
    assert a.take("lora-r8", None) == "0"
    assert a.take("lora-r16", None) == "1"
    assert a.take("lora-r32", None) is None  # both busy: it waits
    a.give("lora-r8")
    assert a.take("lora-r32", None) == "0"


def test_small_nodes_share_a_gpu_while_their_estimates_fit():
    a = GpuAllocator([Gpu("0", 80 * 1024)])
    assert a.take("a", parse_gib(30)) == "0"
    assert a.take("b", parse_gib(30)) == "0"
    assert a.take("c", parse_gib(30)) is None  # 90 GiB would not fit in 80
    assert a.take("whole", None) is None  # an exclusive node waits for an empty GPU
    a.give("a")
    assert a.take("c", parse_gib(30)) == "0"


def test_the_tightest_gpu_that_fits_is_chosen():
    a = GpuAllocator([Gpu("0", 80 * 1024), Gpu("1", 24 * 1024)])
    assert a.take("small", parse_gib(16)) == "1"  # keeps the 80 GB card free for a big node
    assert a.take("big", parse_gib(60)) == "0"


def test_an_exclusive_tenant_blocks_sharing():
    a = GpuAllocator([Gpu("0", H200)])
    assert a.take("whole", None) == "0"
    assert a.take("small", parse_gib(1)) is None


def test_limit_caps_gpu_nodes_at_once():
    a = GpuAllocator([Gpu("0", H200), Gpu("1", H200)], limit=1)
    assert a.take("a", None) == "0"
    assert a.take("b", None) is None
    a.give("a")
    assert a.take("b", None) == "0"


def test_a_node_larger_than_every_gpu_never_fits():
    a = GpuAllocator([Gpu("0", 24 * 1024)])
    assert not a.fits_anywhere(parse_gib(40)) and a.fits_anywhere(parse_gib(20)) and a.fits_anywhere(None)
    assert not GpuAllocator([]).fits_anywhere(None)


def test_unknown_memory_allows_one_tenant_per_gpu():
    a = GpuAllocator([Gpu("0", None), Gpu("1", None)])
    assert a.take("a", parse_gib(8)) == "0" and a.take("b", parse_gib(8)) == "1"
    assert a.take("c", parse_gib(8)) is None


def test_more_slots_than_gpus_share_each_gpu_by_slots():
    a = GpuAllocator([Gpu("0", H200)], limit=2, per_gpu=2)  # --gpu-slots 2 on one GPU
    assert a.take("awq", None) == "0" and a.take("lora", None) == "0"
    assert a.take("third", None) is None
