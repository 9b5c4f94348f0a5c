"""Networks and their parts: activations, initialisers, normalisation, dropout and DropConnect."""

from deepwell.models.activations import ACTIVATIONS, activation_gain
from deepwell.models.init import INITIALIZERS, Initializer
from deepwell.models.layers import DROPOUTS, NORMALIZATIONS, DropConnectLinear, Dropout
from deepwell.models.network import Block, Network, build_model, init_weights_

__all__ = [
    "ACTIVATIONS", "INITIALIZERS", "NORMALIZATIONS", "DROPOUTS",
    "Block", "Network", "DropConnectLinear", "Dropout", "Initializer",
    "activation_gain", "build_model", "init_weights_",
]
