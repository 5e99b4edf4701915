"""FSDPStrategy and ModelParallelStrategy options: Lightning's names, FSDP2's meaning, typed errors."""

from __future__ import annotations

import functools
from datetime import timedelta

import pytest
import torch
from torch import nn

from fabric_core import Fabric
from fabric_core.precision import DoublePrecision, HalfPrecision, MixedPrecision, Precision
from fabric_fsdp import FSDPPrecision, FSDPStrategy, ModelParallelStrategy
from fabric_fsdp.fsdp import SHARDING_STRATEGIES, parse_sharding_strategy
from fabric_fsdp.policies import as_predicate, modules_to_checkpoint, modules_to_shard


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inner = nn.Linear(4, 4)
        self.outer = nn.Linear(4, 4)


def _model() -> nn.Module:
    return nn.Sequential(Block(), nn.ReLU(), Block(), nn.Linear(4, 2))


# -- sharding strategies and meshes ------------------------------------------------------------------


@pytest.mark.parametrize("given", ["FULL_SHARD", "full_shard", "Shard_Grad_Op", "NO_SHARD", "HYBRID_SHARD"])
def test_sharding_strategy_names_are_case_insensitive(given):
    assert parse_sharding_strategy(given) == given.upper()


def test_sharding_strategy_accepts_fsdp1s_enum():
    from torch.distributed.fsdp import ShardingStrategy

    assert parse_sharding_strategy(ShardingStrategy.SHARD_GRAD_OP) == "SHARD_GRAD_OP"


def test_sharding_strategies_map_to_meshes_and_resharding():
    assert SHARDING_STRATEGIES["FULL_SHARD"] == ("shard", True)
    assert SHARDING_STRATEGIES["SHARD_GRAD_OP"] == ("shard", False)
    assert SHARDING_STRATEGIES["HYBRID_SHARD"] == ("hybrid", True)
    assert SHARDING_STRATEGIES["NO_SHARD"] == ("replicate", False)


@pytest.mark.parametrize(
    ("options", "shape"),
    [
        ({}, (4,)),
        ({"sharding_strategy": "SHARD_GRAD_OP"}, (4,)),
        ({"sharding_strategy": "NO_SHARD"}, (4, 1)),
        ({"sharding_strategy": "HYBRID_SHARD"}, (2, 2)),
        ({"sharding_strategy": "HYBRID_SHARD", "device_mesh": (1, 4)}, (1, 4)),
    ],
)
def test_mesh_shape_follows_the_sharding_strategy(options, shape):
    fabric = Fabric(accelerator="cpu", devices=2, num_nodes=2, strategy=FSDPStrategy(**options))
    assert fabric.strategy._mesh_shape() == shape


def test_unknown_sharding_strategy_lists_the_supported_ones():
    with pytest.raises(ValueError, match=r"sharding_strategy='ZERO3'.*'FULL_SHARD', 'SHARD_GRAD_OP'"):
        FSDPStrategy(sharding_strategy="ZERO3")


def test_a_2d_device_mesh_needs_hybrid_sharding():
    with pytest.raises(ValueError, match="pass sharding_strategy='HYBRID_SHARD'"):
        FSDPStrategy(device_mesh=(2, 4))


def test_hybrid_sharding_needs_a_2d_mesh():
    with pytest.raises(ValueError, match=r"Hybrid sharding needs a 2-D mesh"):
        FSDPStrategy(sharding_strategy="HYBRID_SHARD", device_mesh=(8,))


def test_no_shard_takes_no_device_mesh():
    with pytest.raises(ValueError, match="takes no device_mesh"):
        FSDPStrategy(sharding_strategy="NO_SHARD", device_mesh=(2, 1))


def test_a_device_mesh_that_does_not_fit_the_run_is_an_error_at_construction():
    with pytest.raises(ValueError, match=r"device_mesh=\(2, 2\)\) spans 4 processes, but the run has 2"):
        Fabric(
            accelerator="cpu", devices=2, strategy=FSDPStrategy(sharding_strategy="HYBRID_SHARD", device_mesh=(2, 2))
        )


@pytest.mark.parametrize("mesh", ["2x4", (0, 2), (True, 2)])
def test_a_device_mesh_of_the_wrong_type_is_a_type_error(mesh):
    with pytest.raises(TypeError, match=r"device_mesh=.* must be a tuple \(replicate size, shard size\)"):
        FSDPStrategy(sharding_strategy="HYBRID_SHARD", device_mesh=mesh)


# -- other options -----------------------------------------------------------------------------------


def test_state_dict_type_is_sharded_or_full():
    assert FSDPStrategy().state_dict_type == "sharded"
    assert FSDPStrategy(state_dict_type="full").state_dict_type == "full"
    with pytest.raises(ValueError, match=r"state_dict_type='local'\) must be 'sharded'"):
        FSDPStrategy(state_dict_type="local")


def test_cpu_offload_accepts_a_bool_fsdp1s_config_or_fsdp2s_policy():
    from torch.distributed.fsdp import CPUOffload, CPUOffloadPolicy

    assert FSDPStrategy(cpu_offload=True).cpu_offload
    assert FSDPStrategy(cpu_offload=CPUOffload(offload_params=True)).cpu_offload
    assert FSDPStrategy(cpu_offload=CPUOffloadPolicy()).cpu_offload
    assert not FSDPStrategy().cpu_offload
    with pytest.raises(TypeError, match=r"cpu_offload='yes'\) must be True, False or a CPUOffloadPolicy"):
        FSDPStrategy(cpu_offload="yes")


def test_mixed_precision_takes_fsdp2s_policy_and_explains_fsdp1s_config():
    from torch.distributed.fsdp import MixedPrecision, MixedPrecisionPolicy

    policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16)
    assert FSDPStrategy(mixed_precision=policy).mixed_precision_policy is policy
    with pytest.raises(TypeError, match=r"must be a torch\.distributed\.fsdp\.MixedPrecisionPolicy"):
        FSDPStrategy(mixed_precision=MixedPrecision(param_dtype=torch.bfloat16))


def test_the_precision_flag_sets_the_mixed_precision_policy():
    fabric = Fabric(accelerator="cpu", devices=2, strategy="fsdp", precision="bf16-mixed")
    policy = fabric.strategy.mixed_precision_policy
    assert (policy.param_dtype, policy.reduce_dtype) == (torch.bfloat16, torch.float32)


@pytest.mark.parametrize(
    "option", ["use_orig_params", "limit_all_gathers", "sync_module_states", "activation_checkpointing"]
)
def test_fsdp1_options_say_what_replaces_them(option):
    with pytest.raises(TypeError, match=rf"FSDPStrategy\({option}=...\) is an option of FSDP1's wrapper; "):
        FSDPStrategy(**{option: True})


def test_unknown_options_list_the_valid_ones():
    with pytest.raises(TypeError, match=r"unknown options \['bucket_cap_mb'\]. Its options: process_group_backend"):
        FSDPStrategy(bucket_cap_mb=25)


def test_timeout_must_be_a_timedelta():
    assert FSDPStrategy(timeout=timedelta(seconds=5)).timeout == timedelta(seconds=5)
    with pytest.raises(TypeError, match=r"FSDPStrategy\(timeout=5\) must be a datetime.timedelta"):
        FSDPStrategy(timeout=5)


def test_process_group_backend_is_the_accelerators_unless_given():
    assert Fabric(accelerator="cpu", devices=2, strategy="fsdp").strategy.process_group_backend == "gloo"
    assert FSDPStrategy(process_group_backend="mpi").process_group_backend == "mpi"


def test_device_mesh_exists_only_after_launch():
    with pytest.raises(RuntimeError, match=r"device_mesh is created when the processes join.*fabric.launch\(\)"):
        _ = FSDPStrategy().device_mesh


def test_the_strategy_pickles_for_spawned_workers():
    import pickle

    strategy = Fabric(accelerator="cpu", devices=2, strategy=FSDPStrategy(start_method="spawn")).strategy
    restored = pickle.loads(pickle.dumps(strategy))
    assert restored.sharding_strategy == "FULL_SHARD" and restored.start_method == "spawn"


# -- precision ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "precision",
    [
        Precision(),
        DoublePrecision(),
        HalfPrecision("bf16-true"),
        MixedPrecision("bf16-mixed", device="cpu"),
        "bf16-mixed",
    ],
    ids=["Precision", "DoublePrecision", "HalfPrecision", "MixedPrecision", "a-name"],
)
def test_a_precision_other_than_fsdp_precision_is_a_type_error_at_construction(precision):
    # As in Lightning: FSDPStrategy takes FSDPPrecision plugins only.
    with pytest.raises(TypeError, match=r"FSDPStrategy cannot train with .*: it needs an FSDPPrecision"):
        FSDPStrategy(precision=precision)


def test_fsdp_precision_is_accepted_at_construction():
    precision = FSDPPrecision("bf16-mixed")
    assert FSDPStrategy(precision=precision).precision is precision


def test_the_precision_setter_refuses_what_construction_refuses():
    strategy = FSDPStrategy()
    with pytest.raises(TypeError, match=r"cannot train with Precision\(precision=.32-true.\)"):
        strategy.precision = Precision()
    strategy.precision = FSDPPrecision("16-true")
    assert strategy.precision.precision == "16-true"
    strategy.precision = None


def test_the_precision_before_resolution_is_32_bit_fsdp_precision_and_not_a_given_one():
    strategy = FSDPStrategy()
    assert isinstance(strategy.precision, FSDPPrecision) and strategy.precision.precision == "32-true"
    # Reading it did not make it a plugin the user passed: the flag still decides.
    fabric = Fabric(accelerator="cpu", devices=2, strategy=strategy, precision="bf16-mixed")
    assert fabric.strategy.precision.precision == "bf16-mixed"


@pytest.mark.parametrize("plugin", [Precision(), HalfPrecision("16-true"), DoublePrecision()])
def test_a_precision_plugin_that_is_not_fsdp_precision_is_refused_through_fabric(plugin):
    with pytest.raises(TypeError, match=rf"FSDPStrategy cannot train with {type(plugin).__name__}"):
        Fabric(accelerator="cpu", devices=2, strategy="fsdp", plugins=[plugin])


def test_a_precision_name_fsdp_cannot_train_with_is_a_value_error():
    with pytest.raises(ValueError, match=r"cannot train with precision='transformer-engine': use one of '32-true'"):
        Fabric(accelerator="cpu", devices=2, strategy="fsdp", precision="transformer-engine")


# -- policies ----------------------------------------------------------------------------------------


def test_a_class_policy_selects_those_submodules_children_first():
    model = _model()
    selected = modules_to_shard(model, as_predicate({Block, nn.Linear}, "auto_wrap_policy=..."))
    block = model[0]
    assert selected.index(block.inner) < selected.index(block) and model not in selected
    assert len(selected) == 7  # two blocks, their four linears, the head


def test_a_callable_policy_is_asked_about_each_submodule():
    model = _model()
    selected = modules_to_shard(model, as_predicate(lambda m: isinstance(m, Block), "auto_wrap_policy=..."))
    assert selected == [model[0], model[2]]


def test_an_fsdp1_style_policy_gets_the_unwrapped_parameter_count():
    from torch.distributed.fsdp.wrap import size_based_auto_wrap_policy

    model = _model()
    policy = functools.partial(size_based_auto_wrap_policy, min_num_params=30)
    selected = modules_to_shard(model, as_predicate(policy, "auto_wrap_policy=..."))
    assert selected == [model[0], model[2]]  # each Block has 40 parameters, each Linear 20 or 10


def test_activation_checkpointing_selects_the_outermost_matches():
    model = _model()
    selected = modules_to_checkpoint(model, as_predicate({Block, nn.Linear}, "activation_checkpointing_policy=..."))
    assert selected == [model[0], model[2], model[3]]


@pytest.mark.parametrize("policy", [{int}, set(), "Block", 3])
def test_a_bad_policy_is_a_type_error_naming_it(policy):
    with pytest.raises(TypeError, match=r"FSDPStrategy\(auto_wrap_policy="):
        FSDPStrategy(auto_wrap_policy=policy)


# -- ModelParallelStrategy ---------------------------------------------------------------------------


def _identity(model, device_mesh):
    return model


@pytest.mark.parametrize(
    ("sizes", "shape"),
    [({}, (2, 2)), ({"tensor_parallel_size": 4}, (1, 4)), ({"data_parallel_size": 4}, (4, 1))],
)
def test_model_parallel_mesh_sizes_default_to_nodes_and_devices(sizes, shape):
    fabric = Fabric(accelerator="cpu", devices=2, num_nodes=2, strategy=ModelParallelStrategy(_identity, **sizes))
    assert fabric.strategy.mesh_shape == shape


def test_model_parallel_sizes_that_do_not_fit_the_run_are_an_error():
    with pytest.raises(ValueError, match=r"2 x 2 = 4, but the run has 2 processes"):
        Fabric(
            accelerator="cpu",
            devices=2,
            strategy=ModelParallelStrategy(_identity, data_parallel_size=2, tensor_parallel_size=2),
        )


def test_model_parallel_data_is_split_over_the_data_parallel_dimension_only():
    strategy = Fabric(accelerator="cpu", devices=2, num_nodes=2, strategy=ModelParallelStrategy(_identity)).strategy
    assert strategy.distributed_sampler_kwargs == {"num_replicas": 2, "rank": 0}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"parallelize_fn": "fn"}, r"parallelize_fn='fn'\) must be a callable"),
        ({"parallelize_fn": _identity, "tensor_parallel_size": 0}, r"tensor_parallel_size=0\) must be a positive int"),
        ({"parallelize_fn": _identity, "save_distributed_checkpoint": "yes"}, r"must be a bool"),
    ],
)
def test_model_parallel_options_are_checked(options, message):
    with pytest.raises((TypeError, ValueError), match=message):
        ModelParallelStrategy(**options)
