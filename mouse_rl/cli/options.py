"""Argument groups shared by several commands (model and task options)."""
from __future__ import annotations

import argparse

from envs.task import TaskConfig

from ..params import ENCODINGS, PARAMS, ZERO_REWARD_MODES, ModelParams


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """Model options: one per entry of the parameter registry (:data:`mouse_rl.params.PARAMS`), plus the switches."""
    d = ModelParams()
    g = parser.add_argument_group("model")
    for name, spec in PARAMS.items():
        g.add_argument(spec.flag, dest=name, type=float, default=spec.default,
                       help=f"{spec.unit} (default %(default)s)")
    g.add_argument("--encoding", choices=list(ENCODINGS), default=d.encoding)
    g.add_argument("--zero-reward", choices=list(ZERO_REWARD_MODES), default=d.zero_reward)
    g.add_argument("--no-positive", dest="positive", action="store_false", help="allow negative weights")


def add_task_options(parser: argparse.ArgumentParser) -> None:
    d = TaskConfig()
    g = parser.add_argument_group("task")
    g.add_argument("--trials", type=int, default=d.trials_per_session, help="trials per session (default %(default)s)")
    g.add_argument("--contrasts", type=float, nargs="+", default=list(d.contrasts), help="signed contrasts (fractions)")
    g.add_argument("--probabilities", type=float, nargs="+", default=list(d.probabilities), help="one per contrast, sum 1")
    g.add_argument("--repeat-after-error", action="store_true", help="correction trials after errors")


def model_params(args) -> ModelParams:
    return ModelParams(**{name: getattr(args, name) for name in PARAMS}, encoding=args.encoding,
                       zero_reward=args.zero_reward, positive=args.positive)


def task_config(args) -> TaskConfig:
    return TaskConfig(tuple(args.contrasts), tuple(args.probabilities), args.trials, args.repeat_after_error)
