"""Argument groups shared by several commands (model and task options)."""
from __future__ import annotations

import argparse

from envs.task import TaskConfig

from ..data.validation import REWARD_RULES
from ..params import ENCODINGS, PARAMS, ZERO_REWARD_MODES, ModelParams


def add_model_options(parser: argparse.ArgumentParser, fitting: bool = False) -> None:
    """Model options: one per entry of the parameter registry (:data:`mouse_rl.params.PARAMS`), plus the switches.

    ``fitting``: the command fits the model; a numeric flag then sets the fixed value of a parameter that is
    not fitted (see :func:`check_fixed_values`).
    """
    d = ModelParams()
    g = parser.add_argument_group("model")
    suffix = "; fixed value, used when the parameter is not fitted" if fitting else ""
    for name, spec in PARAMS.items():
        g.add_argument(spec.flag, dest=name, type=float, default=spec.default,
                       help=f"{spec.unit} (default %(default)s{suffix})")
    g.add_argument("--encoding", choices=list(ENCODINGS), default=d.encoding,
                   help="network input: side (default, MODEL.md), magnitude, or graded (saturating contrast "
                        "response, mouse_rl.network.graded_contrast)")
    g.add_argument("--zero-reward", choices=list(ZERO_REWARD_MODES), default=d.zero_reward,
                   help="reward learned from at zero contrast: expected (0.5, default) or random (the drawn / "
                        "stored reward; 0.5 where unknown)")
    g.add_argument("--no-positive", dest="positive", action="store_false", help="allow negative weights")


def add_reward_rule_option(parser) -> None:
    """``--reward-rule``: how stored rewards are checked when data are loaded
    (choices :data:`mouse_rl.data.validation.REWARD_RULES`)."""
    parser.add_argument("--reward-rule", choices=list(REWARD_RULES), default=REWARD_RULES[0],
                        help="'stimulus' (default): stored rewards must follow the stimulus side on every trial with "
                             "a stimulus; 'recorded': the task had another rule, use the recorded rewards "
                             "(.csv/.parquet trial tables)")


def check_fixed_values(args, free) -> None:
    """Refuse a numeric model flag set away from its default for a parameter that is fitted (it would be ignored)."""
    for name in free:
        spec = PARAMS[name]
        value = getattr(args, name, spec.default)
        if value != spec.default:
            raise ValueError(f"{spec.flag}: {name} is fitted, so a fixed value ({value:g}) would be ignored; "
                             f"leave {spec.flag} at its default")


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
    if args.trials < 1:  # TaskConfig would name its field (trials_per_session), not the option
        raise ValueError(f"--trials: must be >= 1 (trials per session), got {args.trials}")
    return TaskConfig(tuple(args.contrasts), tuple(args.probabilities), args.trials, args.repeat_after_error)
