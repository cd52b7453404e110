from .attention import SelfAttention2d
from .mi import MINE, StatisticsNetwork
from .temporal import AttentionPool, RecurrentEncoder, per_frame

__all__ = ["MINE", "AttentionPool", "RecurrentEncoder", "SelfAttention2d", "StatisticsNetwork", "per_frame"]
