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
from segcost.passes.verify_conv import Finding, VerifyGroupedConvPass, VerifyResult

# Name → factory, in default pipeline order.
PASSES = {
    "fold-constants": FoldConstantsPass,
    "eliminate-no-ops": EliminateNoOpsPass,
    "eliminate-dead-nodes": EliminateDeadNodesPass,
    "fuse-conv-bn": FuseConvBatchNormPass,
    "fuse-conv-activation": FuseConvActivationPass,
}
DEFAULT_PIPELINE = tuple(PASSES)

__all__ = [
    "DEFAULT_PIPELINE", "PASSES", "EliminateDeadNodesPass", "EliminateNoOpsPass", "Finding", "FoldConstantsPass",
    "FuseConvActivationPass", "FuseConvBatchNormPass", "InvariantError", "PassBase", "PassError", "PassManager",
    "PassRecord", "PassResult", "PipelineResult", "PostconditionError", "PreconditionError",
    "VerifyGroupedConvPass", "VerifyResult",
]
