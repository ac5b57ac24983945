"""Noise schedulers for diffusion, one algorithm per file, diffusers-compatible (see base.py).

Names (the CLI's ``--scheduler``): ddpm, ddim, euler, euler_a, dpmpp_2m, dpmpp_2m_karras, lcm.
``scheduler_for_config(d)`` picks the one a diffusers scheduler_config.json names.
"""
from __future__ import annotations

import importlib
from typing import Any, Mapping

from edgegen.errors import UsageError
from edgegen.schedulers.base import SchedulerConfig

# name -> (module, class, config overrides); one explicit table
SCHEDULERS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "ddpm": ("edgegen.schedulers.ddpm", "DDPMScheduler", {}),
    "ddim": ("edgegen.schedulers.ddim", "DDIMScheduler", {}),
    "euler": ("edgegen.schedulers.euler", "EulerScheduler", {}),
    "euler_a": ("edgegen.schedulers.euler_ancestral", "EulerAncestralScheduler", {}),
    "dpmpp_2m": ("edgegen.schedulers.dpmpp_2m", "DPMPP2MScheduler", {"use_karras_sigmas": False}),
    "dpmpp_2m_karras": ("edgegen.schedulers.dpmpp_2m", "DPMPP2MScheduler", {"use_karras_sigmas": True}),
    "lcm": ("edgegen.schedulers.lcm", "LCMScheduler", {}),
}

# Where diffusers' class defaults differ from SchedulerConfig's: applied under a config dict's own
# keys, so a minimal scheduler_config.json means what it means to diffusers.
CLASS_DEFAULTS: dict[str, dict[str, Any]] = {
    "ddpm": {"clip_sample": True},
    "ddim": {"clip_sample": True},
    "euler": {"timestep_spacing": "linspace"},
    "euler_a": {"timestep_spacing": "linspace"},
    "dpmpp_2m": {"timestep_spacing": "linspace"},
    "dpmpp_2m_karras": {"timestep_spacing": "linspace"},
    "lcm": {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear"},
}

# diffusers' _class_name -> our name
DIFFUSERS_NAMES: dict[str, str] = {
    "DDPMScheduler": "ddpm",
    "DDIMScheduler": "ddim",
    "EulerDiscreteScheduler": "euler",
    "EulerAncestralDiscreteScheduler": "euler_a",
    "DPMSolverMultistepScheduler": "dpmpp_2m",
    "LCMScheduler": "lcm",
}


def make_scheduler(name: str, config: SchedulerConfig | Mapping[str, Any] | None = None):
    """The scheduler called ``name`` over ``config`` (a SchedulerConfig, or a scheduler_config.json dict)."""
    if name not in SCHEDULERS:
        raise UsageError(f"scheduler: expected one of {', '.join(SCHEDULERS)}, found {name!r}")
    module, cls, overrides = SCHEDULERS[name]
    if not isinstance(config, SchedulerConfig):
        config = SchedulerConfig.from_dict({**CLASS_DEFAULTS[name], **(config or {})})
    if overrides:
        import dataclasses
        config = dataclasses.replace(config, **overrides)
    return getattr(importlib.import_module(module), cls)(config)


def scheduler_for_config(d: Mapping[str, Any], source: str = "scheduler_config.json"):
    """The scheduler a diffusers scheduler_config.json describes (its ``_class_name``)."""
    cls = d.get("_class_name")
    if cls not in DIFFUSERS_NAMES:
        raise UsageError(f"{source}: _class_name {cls!r} is not one edgegen runs; known: {', '.join(DIFFUSERS_NAMES)}")
    name = DIFFUSERS_NAMES[cls]
    if name == "dpmpp_2m":
        from edgegen.schedulers.dpmpp_2m import check_config_dict
        check_config_dict(d, source)   # DPM-Solver variants other than ++ 2M are refused, not run as 2M
        if d.get("use_karras_sigmas"):
            name = "dpmpp_2m_karras"
    return make_scheduler(name, d)
