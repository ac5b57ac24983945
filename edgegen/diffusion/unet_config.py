"""UNetConfig: what the native UNet (unet.py) reads from a diffusers ``unet/config.json``.

Two classes (``_class_name``): UNet2DModel (pixel space; unconditional, or class-conditional
through ``num_class_embeds``) and UNet2DConditionModel (cross-attention to text states).
Naming trap kept from diffusers: in UNet2DConditionModel an int ``attention_head_dim`` is the
number of HEADS of the cross-attention blocks (``num_attention_heads`` overrides it); in
UNet2DModel it is the dimension of one head of the self-attention blocks.
Fields that change the math in ways we do not run raise UnsupportedModelError naming the field.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edgegen.errors import ModelFileError, UnsupportedModelError

CLASSES = ("UNet2DModel", "UNet2DConditionModel")
SELF_ATTN_BLOCKS = frozenset({"AttnDownBlock2D", "AttnUpBlock2D"})
CROSS_ATTN_BLOCKS = frozenset({"CrossAttnDownBlock2D", "CrossAttnUpBlock2D"})
DOWN_BLOCKS = {"UNet2DModel": ("DownBlock2D", "AttnDownBlock2D"),
               "UNet2DConditionModel": ("DownBlock2D", "AttnDownBlock2D", "CrossAttnDownBlock2D")}
UP_BLOCKS = {"UNet2DModel": ("UpBlock2D", "AttnUpBlock2D"),
             "UNet2DConditionModel": ("UpBlock2D", "AttnUpBlock2D", "CrossAttnUpBlock2D")}
MID_BLOCKS = {"UNet2DModel": (None, "UNetMidBlock2D"),
              "UNet2DConditionModel": (None, "UNetMidBlock2D", "UNetMidBlock2DCrossAttn")}

# field: the values we run (the first is diffusers' default). Anything else is UnsupportedModelError.
SUPPORTED_VALUES: dict[str, tuple[Any, ...]] = {
    "class_embed_type": (None,),
    "time_embedding_type": ("positional",),
    "act_fn": ("silu", "swish"),
    "resnet_time_scale_shift": ("default",),
    "only_cross_attention": (False,),
    "mid_block_only_cross_attention": (None, False),
    "dual_cross_attention": (False,),
    "addition_embed_type": (None,),
    "encoder_hid_dim": (None,),
    "encoder_hid_dim_type": (None,),
    "time_cond_proj_dim": (None,),
    "timestep_post_act": (None,),
    "time_embedding_act_fn": (None,),
    "class_embeddings_concat": (False,),
    "attention_type": ("default",),
    "reverse_transformer_layers_per_block": (None,),
    "downsample_type": ("conv",),
    "upsample_type": ("conv",),
}
# upcast_attention is accepted: it computes q k^T and the softmax in float32, which we always do.


@dataclass(frozen=True)
class UNetConfig:
    conditional: bool                            # UNet2DConditionModel (text states) vs UNet2DModel
    in_channels: int
    out_channels: int
    sample_size: int
    down_block_types: tuple[str, ...]
    up_block_types: tuple[str, ...]
    mid_block_type: str | None
    block_out_channels: tuple[int, ...]
    layers_per_block: tuple[int, ...]            # per down block (up blocks have one more)
    attention_head_dim: tuple[int | None, ...]   # per block, the raw field (head dim of Attn* blocks)
    num_attention_heads: tuple[int | None, ...]  # per block, heads of CrossAttn* blocks (None in UNet2DModel)
    cross_attention_dim: int | None
    norm_num_groups: int
    norm_eps: float
    use_linear_projection: bool
    transformer_layers_per_block: int
    flip_sin_to_cos: bool
    freq_shift: float
    center_input_sample: bool
    num_class_embeds: int | None
    time_embed_dim: int                          # T: time_embedding_dim or 4 * block_out_channels[0]
    downsample_padding: int
    mid_block_scale_factor: float
    attn_norm_num_groups: int | None             # UNet2DModel's mid attention (None: norm_num_groups)
    add_attention: bool                          # UNet2DModel's mid attention present
    conv_in_kernel: int = 3
    conv_out_kernel: int = 3
    path: str | None = None                      # the config file, named in errors

    @classmethod
    def from_hf_config(cls, d: dict, path=None) -> "UNetConfig":
        """From a diffusers unet/config.json dict; missing fields take diffusers' defaults."""
        where = str(path) if path is not None else "unet config"
        name = d.get("_class_name")
        if name not in CLASSES:
            raise UnsupportedModelError(f"{where}: field '_class_name': expected one of {', '.join(CLASSES)}, "
                                        f"found {name!r}")
        _check_supported(d, where)
        cond = name == "UNet2DConditionModel"
        get = d.get
        boc = tuple(int(c) for c in get("block_out_channels", (320, 640, 1280, 1280) if cond else (224, 448, 672, 896)))
        n = len(boc)
        down = tuple(get("down_block_types", ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",) if cond else
                         ("DownBlock2D",) + ("AttnDownBlock2D",) * 3))
        up = tuple(get("up_block_types", ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3 if cond else
                       ("AttnUpBlock2D",) * 3 + ("UpBlock2D",)))
        mid = get("mid_block_type", "UNetMidBlock2DCrossAttn" if cond else "UNetMidBlock2D")
        _check_blocks(name, down, up, mid, n, where)
        head_dim = _per_block(get("attention_head_dim", 8), n, "attention_head_dim", where)
        heads = _per_block(get("num_attention_heads") or get("attention_head_dim", 8), n,
                           "num_attention_heads", where) if cond else (None,) * n
        groups = get("norm_num_groups", 32)
        if groups is None:
            raise UnsupportedModelError(f"{where}: field 'norm_num_groups': expected an int, found None")
        num_class = get("num_class_embeds")
        if cond and num_class is not None:
            raise UnsupportedModelError(f"{where}: field 'num_class_embeds': a UNet2DConditionModel with class "
                                        f"labels is not supported (expected null, found {num_class!r})")
        cfg = cls(
            conditional=cond, in_channels=int(get("in_channels", 4 if cond else 3)),
            out_channels=int(get("out_channels", 4 if cond else 3)),
            sample_size=_side(get("sample_size"), where), down_block_types=down, up_block_types=up,
            mid_block_type=mid, block_out_channels=boc,
            layers_per_block=tuple(_per_block(get("layers_per_block", 2), n, "layers_per_block", where)),
            attention_head_dim=head_dim, num_attention_heads=heads,
            cross_attention_dim=(_same_int(get("cross_attention_dim", 1280), "cross_attention_dim", where)
                                 if cond else None),
            norm_num_groups=int(groups), norm_eps=float(get("norm_eps", 1e-5)),
            use_linear_projection=bool(get("use_linear_projection", False)),
            transformer_layers_per_block=_same_int(get("transformer_layers_per_block", 1),
                                                   "transformer_layers_per_block", where),
            flip_sin_to_cos=bool(get("flip_sin_to_cos", True)), freq_shift=float(get("freq_shift", 0)),
            center_input_sample=bool(get("center_input_sample", False)),
            num_class_embeds=None if num_class is None else int(num_class),
            time_embed_dim=int(get("time_embedding_dim") or 4 * boc[0]),
            downsample_padding=int(get("downsample_padding", 1)),
            mid_block_scale_factor=float(get("mid_block_scale_factor", 1.0)),
            attn_norm_num_groups=get("attn_norm_num_groups"), add_attention=bool(get("add_attention", True)),
            conv_in_kernel=int(get("conv_in_kernel", 3)), conv_out_kernel=int(get("conv_out_kernel", 3)),
            path=None if path is None else str(path))
        cfg._check_divisible(where)
        return cfg

    def _check_divisible(self, where: str) -> None:
        for i, c in enumerate(self.block_out_channels):
            if c % self.norm_num_groups:
                raise ModelFileError(f"{where}: field 'block_out_channels': {c} channels do not split into "
                                     f"norm_num_groups={self.norm_num_groups} groups")
            heads = self.num_attention_heads[i]
            if CROSS_ATTN_BLOCKS & {self.down_block_types[i]} and heads and c % heads:
                raise ModelFileError(f"{where}: field 'num_attention_heads' (or 'attention_head_dim'): "
                                     f"{c} channels do not split into {heads} heads")


def _check_supported(d: dict, where: str) -> None:
    for key, allowed in SUPPORTED_VALUES.items():
        value = d.get(key, allowed[0])
        values = value if isinstance(value, (list, tuple)) else [value]
        if any(v not in allowed for v in values):
            want = " or ".join("null" if a is None else repr(a) for a in allowed)
            raise UnsupportedModelError(f"{where}: field {key!r}: the native UNet runs {want} only, found {value!r}")


def _check_blocks(name: str, down: tuple, up: tuple, mid, n: int, where: str) -> None:
    for key, types, allowed in (("down_block_types", down, DOWN_BLOCKS[name]), ("up_block_types", up, UP_BLOCKS[name])):
        if len(types) != n:
            raise ModelFileError(f"{where}: field {key!r}: expected {n} entries (one per block_out_channels), "
                                 f"found {len(types)}")
        for t in types:
            if t not in allowed:
                raise UnsupportedModelError(f"{where}: field {key!r}: {t!r} is not supported in {name} "
                                            f"(supported: {', '.join(allowed)})")
    if mid not in MID_BLOCKS[name]:
        raise UnsupportedModelError(f"{where}: field 'mid_block_type': {mid!r} is not supported in {name} "
                                    f"(supported: {', '.join(str(m) for m in MID_BLOCKS[name])})")


def _per_block(value, n: int, key: str, where: str) -> tuple:
    if value is None or isinstance(value, int):
        return (value,) * n
    if isinstance(value, (list, tuple)) and len(value) == n:
        return tuple(None if v is None else int(v) for v in value)
    raise ModelFileError(f"{where}: field {key!r}: expected an int or {n} ints (one per block), found {value!r}")


def _same_int(value, key: str, where: str) -> int:
    """An int, or a per-block list whose entries are all the same int."""
    if isinstance(value, (list, tuple)):
        if value and all(isinstance(v, int) for v in value) and len(set(value)) == 1:
            return int(value[0])
        raise UnsupportedModelError(f"{where}: field {key!r}: one int for every block is supported, found {value!r}")
    if not isinstance(value, int):
        raise UnsupportedModelError(f"{where}: field {key!r}: expected an int, found {value!r}")
    return value


def _side(value, where: str) -> int:
    if isinstance(value, (list, tuple)) and len(value) == 2 and value[0] == value[1]:
        value = value[0]
    if not isinstance(value, int):
        raise UnsupportedModelError(f"{where}: field 'sample_size': expected an int (a square sample), found {value!r}")
    return value
