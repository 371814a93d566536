"""Folding spectral normalisation into plain weights for export and inference.

``torch.nn.utils.spectral_norm`` stores ``weight_orig``, ``u`` and ``v`` and, in eval mode,
computes ``W = weight_orig / sigma`` with ``sigma = u . (W_mat v)`` and no power iteration.
Folding computes exactly that once and stores ``W`` as an ordinary ``weight`` parameter, so the
graph that is traced contains no normalisation arithmetic.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.spectral_norm import SpectralNorm


def _spectral_hooks(module: nn.Module):
    return [(key, hook) for key, hook in module._forward_pre_hooks.items() if isinstance(hook, SpectralNorm)]


def _is_spectral_state_hook(hook) -> bool:
    inner = getattr(hook, "hook", hook)  # load pre-hooks come wrapped
    return type(inner).__name__.startswith("SpectralNorm")


def folded_weight(weight_orig: torch.Tensor, u: torch.Tensor, v: torch.Tensor, dim: int) -> torch.Tensor:
    """``weight_orig / (u . (W_mat v))`` where ``W_mat`` is ``weight_orig`` flattened around ``dim``.

    ``dim`` is 0 for Conv (u has the output-channel size) and 1 for ConvTranspose (u has the
    output-channel size, which is dim 1 of its weight).
    """
    w = weight_orig
    if dim != 0:
        w = w.permute(dim, *[d for d in range(w.dim()) if d != dim])
    w_mat = w.reshape(w.shape[0], -1)
    sigma = torch.dot(u, torch.mv(w_mat, v))
    return weight_orig / sigma


def fold_spectral_norm(model: nn.Module) -> nn.Module:
    """Return a copy of ``model`` whose spectral-normed layers hold plain, pre-normalised weights.

    Uses the stored u and v (no power iteration), so in eval mode the outputs equal the
    original's. The input model is left untouched.
    """
    model = copy.deepcopy(model)
    for module in model.modules():
        for key, hook in _spectral_hooks(module):
            name = hook.name
            with torch.no_grad():
                w = folded_weight(
                    getattr(module, name + "_orig"),
                    getattr(module, name + "_u"),
                    getattr(module, name + "_v"),
                    hook.dim,
                ).detach().clone()
            del module._forward_pre_hooks[key]
            delattr(module, name)
            delattr(module, name + "_orig")
            delattr(module, name + "_u")
            delattr(module, name + "_v")
            module.register_parameter(name, nn.Parameter(w))
            # The state-dict hooks spectral_norm registers translate keys; drop them with the hook.
            for hooks in (module._state_dict_hooks, module._load_state_dict_pre_hooks):
                for hk in [k for k, h in hooks.items() if _is_spectral_state_hook(h)]:
                    del hooks[hk]
    return model


def has_spectral_norm(model: nn.Module) -> bool:
    """True when any submodule still carries a spectral-norm hook."""
    return any(_spectral_hooks(m) for m in model.modules())
