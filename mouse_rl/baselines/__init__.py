"""Baseline choice models, all with the :class:`mouse_rl.fit.cv.CVModel` interface.

* :class:`QLearningModel` - stimulus-independent Q-learning (the paper's
  early-learning model: beta, alpha+, alpha-, innate Q_L, Q_R) or, with
  ``tabular=True``, tabular stimulus-dependent Q-learning (Q[stimulus class, action]).
* :class:`PsyTrackModel` - PsyTrack (bias, left- and right-contrast weights as
  Gaussian random walks, hyperparameters by ``psytrack.hyperOpt``).
* The shallow network (w0 = 1) is :meth:`mouse_rl.fit.cv.NetworkModel.shallow`.
"""
from .psytrack_model import PsyTrackModel
from .qlearning import QLearningModel, q_logprob, q_update, simulate_qlearning

__all__ = ["PsyTrackModel", "QLearningModel", "q_logprob", "q_update", "simulate_qlearning", "default_models"]


def default_models(q_kw: dict | None = None, predictive: str = "plugin", n_samples: int = 64, draw_seed: int = 0,
                   **network_kw):
    """Factories of the five compared models (network, shallow network, PsyTrack, two Q-learners).

    ``network_kw`` go to :class:`~mouse_rl.fit.cv.NetworkModel` (both networks),
    ``q_kw`` to both :class:`QLearningModel` s; ``predictive`` / ``n_samples`` / ``draw_seed``
    (held-out scoring, see :mod:`mouse_rl.fit.predictive`) to all four batched
    models. PsyTrack is always scored at its fitted weights.
    """
    q_kw = dict(q_kw or {}, predictive=predictive, n_samples=n_samples, draw_seed=draw_seed)
    network_kw = dict(network_kw, predictive=predictive, n_samples=n_samples, draw_seed=draw_seed)
    from ..fit.cv import NetworkModel

    return {
        "network": lambda df: NetworkModel(df, **network_kw),
        "shallow": lambda df: NetworkModel.shallow(df, **network_kw),
        "qlearning": lambda df: QLearningModel(df, **q_kw),
        "qlearning_tabular": lambda df: QLearningModel(df, tabular=True, name="qlearning_tabular", **q_kw),
        "psytrack": lambda df: PsyTrackModel(df),
    }
