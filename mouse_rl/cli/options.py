"""Argument groups shared by several commands (model and task options)."""
from __future__ import annotations

import argparse

from envs.task import TaskConfig

from ..params import ModelParams


def add_model_options(parser: argparse.ArgumentParser) -> None:
    d = ModelParams()
    g = parser.add_argument_group("model")
    g.add_argument("--eta", type=float, default=d.eta, help="learning rate per trial (default %(default)s)")
    g.add_argument("--beta", type=float, default=d.beta, help="softmax inverse temperature (default %(default)s)")
    g.add_argument("--w0", type=float, default=d.w0, help="initial stimulus cortical gain; 1 = shallow (default %(default)s)")
    g.add_argument("--k", type=float, default=d.k, help="initial bias cortical gain (default %(default)s)")
    g.add_argument("--s0", type=float, default=d.s0, help="initial striatal stimulus weights (default %(default)s)")
    g.add_argument("--b-left", dest="b_L", type=float, default=d.b_L, help="initial left bias weight U[L,b]")
    g.add_argument("--b-right", dest="b_R", type=float, default=d.b_R, help="initial right bias weight U[R,b]")
    g.add_argument("--lapse", type=float, default=d.lapse, help="lapse rate (default %(default)s)")
    g.add_argument("--encoding", choices=["side", "magnitude"], default=d.encoding)
    g.add_argument("--zero-reward", choices=["expected", "random"], default=d.zero_reward)
    g.add_argument("--no-positive", dest="positive", action="store_false", help="allow negative weights")


def add_task_options(parser: argparse.ArgumentParser) -> None:
    d = TaskConfig()
    g = parser.add_argument_group("task")
    g.add_argument("--trials", type=int, default=d.trials_per_session, help="trials per session (default %(default)s)")
    g.add_argument("--contrasts", type=float, nargs="+", default=list(d.contrasts), help="signed contrasts (fractions)")
    g.add_argument("--probabilities", type=float, nargs="+", default=list(d.probabilities), help="one per contrast, sum 1")
    g.add_argument("--repeat-after-error", action="store_true", help="correction trials after errors")


def model_params(args) -> ModelParams:
    return ModelParams(eta=args.eta, beta=args.beta, w0=args.w0, k=args.k, s0=args.s0, b_L=args.b_L, b_R=args.b_R,
                       lapse=args.lapse, encoding=args.encoding, zero_reward=args.zero_reward, positive=args.positive)


def task_config(args) -> TaskConfig:
    return TaskConfig(tuple(args.contrasts), tuple(args.probabilities), args.trials, args.repeat_after_error)
