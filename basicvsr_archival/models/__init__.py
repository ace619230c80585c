"""Networks, losses and the restorer; importing this module registers them in ``MODELS``."""

from . import ops
from .basicvsr import BasicVSR
from .basicvsr_plusplus import BasicVSRPlusPlus, SecondOrderDeformableAlignment
from .common import PixelShufflePack, ResidualBlockNoBN, ResidualBlocksWithInputConv, flow_warp, make_layer
from .losses import CharbonnierLoss, L1Loss, MSELoss
from .spynet import SPyNet

__all__ = [
    "BasicVSR",
    "BasicVSRPlusPlus",
    "CharbonnierLoss",
    "L1Loss",
    "MSELoss",
    "PixelShufflePack",
    "ResidualBlockNoBN",
    "ResidualBlocksWithInputConv",
    "SPyNet",
    "SecondOrderDeformableAlignment",
    "flow_warp",
    "make_layer",
    "ops",
]
