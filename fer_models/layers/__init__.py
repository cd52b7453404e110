from .attention import SelfAttention2d

__all__ = ["SelfAttention2d"]
