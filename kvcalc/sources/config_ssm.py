"""Pure state-space models (Mamba, Falcon-Mamba, Mamba2 / Mamba-Codestral): no attention, no KV
cache, one constant state per sequence in every layer, as transformers' config classes build them.

- mamba, falcon_mamba (MambaConfig, FalconMambaConfig): the mixer is intermediate_size wide,
  ``expand x hidden_size`` unless config.json states intermediate_size (transformers keeps the
  stated one: tiiuae/falcon-mamba-7b says expand 16 beside intermediate_size 8192 = 2 x 4096, and
  its weights are 8192 wide). State per layer: SSM intermediate x state_size, conv intermediate x
  conv_kernel (MambaCache; vLLM's mamba1_state_shape keeps conv_kernel - 1 columns).
- mamba2 (Mamba2Config): num_heads x head_dim must equal expand x hidden_size (transformers
  refuses otherwise). State per layer: SSM num_heads x head_dim x state_size, conv
  (num_heads x head_dim + 2 x n_groups x state_size) x conv_kernel.

The state's dtype is read as for the hybrids (config_layers.with_state_dtype): the model dtype
unless mamba_ssm_dtype says otherwise.
"""

from __future__ import annotations

from kvcalc.sources.config_fields import Reader, note_once
from kvcalc.sources.config_layers import with_state_dtype

PURE_SSM_TYPES = frozenset({"mamba", "falcon_mamba", "mamba2"})


def is_pure_ssm(r: Reader) -> bool:
    return r.model_type in PURE_SSM_TYPES


def _whole(r: Reader, key: str) -> int:
    value = r.data.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        r.fail(f"{r.model_type} configs need {key}, a positive whole number (got {value!r})")
    return value


def ssm_count(r: Reader) -> int:
    """num_hidden_layers (n_layer, mamba_ssm's own name, read too: a second one that differs is noted).

    An ``ssm_cfg`` (mamba_ssm's own settings, kept by conversions) must be empty: transformers' classes
    do not read it, and a setting there would mean a layer kvcalc has not been told about."""
    count = r.integer("num_hidden_layers", default=False)
    if count is None:
        r.fail(f"{r.model_type} configs need num_hidden_layers (or n_layer)")
    extra = r.data.get("ssm_cfg")
    if extra not in (None, {}):
        r.fail(f"ssm_cfg {extra!r:.60} holds mamba_ssm's own layer settings, which transformers does not read; "
               "kvcalc reads transformers' fields (state_size, conv_kernel, expand, ...)")
    return count


def ssm_layers(r: Reader, count: int) -> dict:
    """Every layer one state kind: ``mamba`` or ``mamba2``."""
    name, kind = _mamba2(r) if r.model_type == "mamba2" else _mamba(r)
    return {"count": count, "kinds": {name: kind}, "pattern": [name]}


def _mamba(r: Reader) -> tuple[str, dict]:
    hidden, state, kernel = (_whole(r, k) for k in ("hidden_size", "state_size", "conv_kernel"))
    expand = r.data.get("expand")
    stated = r.data.get("intermediate_size")
    if stated is not None:
        inner = _whole(r, "intermediate_size")
        if isinstance(expand, int) and expand * hidden != inner:
            r.notes.append(f"ignored: expand {expand}: intermediate_size {inner} is stated, and transformers "
                           f"builds the mixer that wide (not expand x hidden_size = {expand * hidden})")
    else:
        expand = 2 if expand is None else _whole(r, "expand")
        inner = expand * hidden
        r.notes.append(f"inferred: intermediate_size = expand x hidden_size = {expand} x {hidden} = {inner}"
                       + ("" if "expand" in r.data else " (expand 2, transformers' default)"))
    note_once(r, (
        f"inferred: each Mamba layer's conv state holds conv_kernel ({kernel}) columns, as transformers allocates "
        f"it; vLLM keeps conv_kernel - 1 ({kernel - 1}), {inner} elements less per layer"
    ))
    ssm, conv = inner * state, inner * kernel
    return "mamba", with_state_dtype(r, {
        "type": "none", "state_elements": ssm + conv, "conv_channels": inner, "conv_kernel": kernel,
        "mixer": "mamba",
        "description": (f"Mamba layer: SSM state intermediate_size x state_size = {inner} x {state} = {ssm} plus "
                        f"conv state {inner} x conv_kernel {kernel} = {conv}; no attention, no KV cache"),
    }, "Mamba")


def _mamba2(r: Reader) -> tuple[str, dict]:
    hidden, heads, head_dim, state, groups, kernel = (
        _whole(r, k) for k in ("hidden_size", "num_heads", "head_dim", "state_size", "n_groups", "conv_kernel"))
    expand = _whole(r, "expand")
    inner = heads * head_dim
    if expand * hidden != inner:  # Mamba2Config.validate_architecture refuses it too
        r.fail(f"num_heads x head_dim = {heads} x {head_dim} = {inner} must equal expand x hidden_size = "
               f"{expand} x {hidden} = {expand * hidden} (transformers' Mamba2Config refuses it)")
    ssm, conv_dim = heads * head_dim * state, inner + 2 * groups * state
    note_once(r, (
        f"inferred: each Mamba2 layer's conv state holds conv_kernel ({kernel}) columns, as transformers "
        f"allocates it; vLLM keeps conv_kernel - 1 ({kernel - 1}), {conv_dim} elements less per layer"
    ))
    return "mamba2", with_state_dtype(r, {
        "type": "none", "state_elements": ssm + conv_dim * kernel, "conv_channels": conv_dim, "conv_kernel": kernel,
        "mixer": "mamba2",
        "description": (f"Mamba2 layer: SSM state {heads} heads x {head_dim} x {state} = {ssm} plus conv state "
                        f"({inner} + 2 x {groups} groups x {state} = {conv_dim} channels) x kernel {kernel} = "
                        f"{conv_dim * kernel}; no attention, no KV cache"),
    }, "Mamba2")
