"""Graph passes and the PassManager (see _infra for the contract)."""

from segcost.passes._infra import (
    InvariantError,
    PassBase,
    PassError,
    PassManager,
    PassRecord,
    PassResult,
    PipelineResult,
    PostconditionError,
    PreconditionError,
)
from segcost.passes.cleanup import EliminateDeadNodesPass, EliminateNoOpsPass, FoldConstantsPass
from segcost.passes.fuse_activation import FuseConvActivationPass
from segcost.passes.fuse_batchnorm import FuseConvBatchNormPass
from segcost.passes.fuse_pad import FusePadPass
from segcost.passes.verify_conv import Finding, VerifyGroupedConvPass, VerifyResult

# Name → factory, in default pipeline order; passes after the default pipeline's last one run only when named
# (`optimize --passes`) or for a target whose runtime makes that rewrite itself (pipeline.RUNTIME_PASSES).
PASSES = {
    "fold-constants": FoldConstantsPass,
    "eliminate-no-ops": EliminateNoOpsPass,
    "eliminate-dead-nodes": EliminateDeadNodesPass,
    "fuse-conv-bn": FuseConvBatchNormPass,
    "fuse-conv-activation": FuseConvActivationPass,
    "fuse-pad": FusePadPass,
}
DEFAULT_PIPELINE = ("fold-constants", "eliminate-no-ops", "eliminate-dead-nodes", "fuse-conv-bn",
                    "fuse-conv-activation")

__all__ = [
    "DEFAULT_PIPELINE", "PASSES", "EliminateDeadNodesPass", "EliminateNoOpsPass", "Finding", "FoldConstantsPass",
    "FuseConvActivationPass", "FuseConvBatchNormPass", "FusePadPass", "InvariantError", "PassBase", "PassError",
    "PassManager", "PassRecord", "PassResult", "PipelineResult", "PostconditionError", "PreconditionError",
    "VerifyGroupedConvPass", "VerifyResult",
]
