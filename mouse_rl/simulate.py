"""Train a cohort of simulated mice: one batched loop over trials, all mice at once."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from envs import rng
from envs.cohort_env import CohortEnv
from envs.task import TaskConfig

from .checkpoint import load_cohort_state, save_atomic
from .network import Weights, encode, forward, init_weights, learning_reward, p_right, trial_update
from .params import ModelParams
from .schema import MODEL_COLUMNS, WEIGHT_COLUMNS

_TRIAL_FIELDS = ["signed_contrast", "choice", "reward"] + MODEL_COLUMNS


@dataclass
class CohortResult:
    """Output of :func:`simulate_cohort`.

    trials : one row per mouse and trial (schema in :mod:`mouse_rl.schema`);
        empty if ``record_trials=False``.
    weights : one row per mouse and session boundary: session 0 = initial
        weights, session s = weights after the last trial of session s.
    final_weights : the :class:`~mouse_rl.network.Weights` tensors at the end.
    seeds : per-mouse seeds used (rerun any mouse alone with its seed).
    """

    trials: pd.DataFrame
    weights: pd.DataFrame
    final_weights: Weights
    seeds: np.ndarray
    params: ModelParams
    task: TaskConfig
    meta: dict = field(default_factory=dict)

    def to_parquet(self, path) -> None:
        """Write the trial table to ``path`` and the weight snapshots beside it (``*.weights.parquet``)."""
        from pathlib import Path

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.trials.to_parquet(path, index=False)
        self.weights.to_parquet(path.with_suffix(".weights.parquet"), index=False)


def mouse_names(n_mice: int) -> list[str]:
    return [f"sim{i:04d}" for i in range(n_mice)]


def weights_frame(weights: Weights, session: int, names) -> pd.DataFrame:
    """One row per mouse with the weight columns of :data:`mouse_rl.schema.WEIGHT_COLUMNS`."""
    flat = torch.cat([weights.a, weights.U.reshape(*weights.U.shape[:-2], 6)], dim=-1)
    df = pd.DataFrame(flat.detach().cpu().double().numpy(), columns=WEIGHT_COLUMNS)
    df.insert(0, "session", session)
    df.insert(0, "mouse", list(names))
    return df


def simulate_cohort(
    n_mice: int = 30,
    n_sessions: int = 25,
    trials_per_session: int | None = None,
    params: ModelParams | None = None,
    task: TaskConfig | None = None,
    seed: int = 0,
    seeds=None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    record_trials: bool = True,
    record_weights: str = "session",
    progress: bool = False,
    checkpoint=None,
    checkpoint_every: int = 1,
    stimulation=None,
) -> CohortResult:
    """Train ``n_mice`` simulated mice for ``n_sessions`` sessions on the batched task.

    Parameters
    ----------
    n_mice, n_sessions : cohort size and number of sessions.
    trials_per_session : overrides ``task.trials_per_session`` (default 220).
    params : :class:`ModelParams` (scalars or one value per mouse).
    task : :class:`envs.TaskConfig`.
    seed : cohort seed; mouse i gets ``rng.mouse_seeds(seed, n_mice)[i]``.
    seeds : explicit per-mouse seeds (overrides ``seed``); mouse i of any
        cohort with seed s_i behaves exactly like a 1-mouse run with [s_i].
    device, dtype : where and in which precision to run.
    record_trials : build the per-trial table (N x S x T rows).
    record_weights : ``"session"`` (snapshots in ``result.weights``) or
        ``"trial"`` (also the weights each trial's choice was made with, as
        weight columns of the trial table).
    progress : show a progress bar over sessions (stderr; off by default, on in the CLI).
    checkpoint : path of a checkpoint file. Every ``checkpoint_every``
        sessions the state (weights, trial counter, logs) is written
        atomically; a rerun with the same arguments resumes from it and gives
        output identical to an uninterrupted run (randomness is counter-based,
        so no generator state is needed).
    stimulation : optional callable ``(t, session, c, choice, reward, seeds)
        -> (mask, delta_offset, reward_add)`` called every trial after the
        choice (``t`` global trial from 0, tensors per mouse): ``delta_offset``
        ``(n_mice, 3)`` or None is added to (delta_tot, delta_stim,
        delta_const) and ``reward_add`` to the reward the network learns from;
        ``mask`` is logged as the bool column ``stimulated``. Used by
        :mod:`mouse_rl.dopamine.optogenetics`.
    """
    params = params or ModelParams()
    task = task or TaskConfig()
    if trials_per_session is not None:
        task = TaskConfig(task.contrasts, task.probabilities, trials_per_session, task.repeat_after_error, task.zero_reward_p_right)
    if int(n_mice) != n_mice or n_mice < 1:
        raise ValueError(f"n_mice: must be a positive integer, got {n_mice!r}")
    if int(n_sessions) != n_sessions or n_sessions < 1:
        raise ValueError(f"n_sessions: must be a positive integer, got {n_sessions!r}")
    if record_weights not in ("session", "trial"):
        raise ValueError(f"record_weights: must be 'session' or 'trial', got {record_weights!r}")
    if int(checkpoint_every) != checkpoint_every or checkpoint_every < 1:
        raise ValueError(f"checkpoint_every: must be a positive integer, got {checkpoint_every!r}")
    hint = params.n_mice_hint()
    if hint is not None and hint not in (1, n_mice):
        raise ValueError(f"params: per-mouse parameters have length {hint} but n_mice={n_mice}")
    device = torch.device(device)
    seed_values = rng.mouse_seeds(seed, n_mice) if seeds is None else np.asarray(seeds)
    env = CohortEnv(n_mice, seeds=seed_values, task=task, device=device, dtype=dtype)
    p = params.tensors(n_mice, device=device, dtype=dtype)
    names = mouse_names(n_mice)
    T = task.trials_per_session
    n_total = n_sessions * T
    fields_logged = (_TRIAL_FIELDS + (WEIGHT_COLUMNS if record_weights == "trial" else [])
                     + (["stimulated"] if stimulation is not None else []))

    weights = init_weights(p, env.seeds, params.jitter)
    snapshots = [weights_frame(weights, 0, names)]
    log = {k: torch.empty((n_total, n_mice), dtype=dtype, device=device) for k in fields_logged} if record_trials else None
    env.validate_actions = False  # choices come from the sampler below
    start = 0
    fingerprint = _fingerprint(n_mice, n_sessions, params, task, seed_values, dtype, record_trials, record_weights)
    state = load_cohort_state(checkpoint, fingerprint, T, list(log) if log is not None else None)
    if state is not None:
        start = state["global_trial"]
        weights = Weights(state["a"].to(device), state["U"].to(device))
        snapshots = state["snapshots"]
        if log is not None:
            for k in log:
                log[k][:start] = state["log"][k].to(device)
        _, info = env.reset(options={"global_trial": start, "signed_contrast": state["signed_contrast"]})
    else:
        _, info = env.reset()
    choice_key = rng.stream_key(env.seeds, rng.CHOICE)
    lapse = p.lapse if bool((p.lapse != 0).any()) else None  # skip the lapse arithmetic when nobody lapses
    with torch.no_grad():
        bar = tqdm(total=n_sessions, initial=start // T, desc="sessions", unit="session", disable=not progress, leave=False)
        for t in range(start, n_total):
            if t % T == 0:
                choice_u = rng.uniform(env.seeds, rng.CHOICE, torch.arange(t, t + T, device=device)[:, None], dtype, choice_key)
            c = info["signed_contrast"]
            x = encode(c, params.encoding)
            fwd = forward(weights, x)
            pr = p_right(fwd.q_tot, p.beta, lapse)
            choice = (choice_u[t % T] < pr).long()
            _, reward, _, _, info = env.step(choice)
            learn_reward = learning_reward(c, reward, params.zero_reward)
            offset = None
            if stimulation is not None:
                stimulated, offset, reward_add = stimulation(t, t // T + 1, c, choice, reward, env.seeds)
                learn_reward = learn_reward + reward_add
            step = trial_update(weights, x, choice, learn_reward, p.eta, params.positive, fwd, delta_offset=offset)
            if log is not None:
                row = [c, choice, reward, pr, *fwd.q_tot.unbind(-1), *fwd.q_stim.unbind(-1), *fwd.q_const.unbind(-1),
                       step.delta_tot, step.delta_stim, step.delta_const]
                if record_weights == "trial":
                    row += [*weights.a.unbind(-1), *weights.U.reshape(n_mice, 6).unbind(-1)]
                if stimulation is not None:
                    row.append(stimulated)
                for k, v in zip(fields_logged, row):
                    log[k][t] = v
            weights = step.weights
            if (t + 1) % T == 0:  # session end (known on the host: no device sync)
                session = (t + 1) // T
                snapshots.append(weights_frame(weights, session, names))
                bar.update(1)
                if checkpoint is not None and (session % checkpoint_every == 0) and session < n_sessions:
                    save_atomic(
                        {"fingerprint": fingerprint, "global_trial": t + 1, "a": weights.a.cpu(), "U": weights.U.cpu(),
                         "signed_contrast": info["signed_contrast"].cpu(), "snapshots": snapshots,
                         "log": {k: v[: t + 1].cpu() for k, v in log.items()} if log is not None else None},
                        checkpoint,
                    )
        bar.close()
    trials = _trial_table(log, names, n_sessions, T) if log is not None else pd.DataFrame()
    return CohortResult(trials, pd.concat(snapshots, ignore_index=True), weights, seed_values, params, task,
                        {"device": str(device), "dtype": str(dtype), "seed": seed})


def _fingerprint(n_mice, n_sessions, params, task, seeds, dtype, record_trials, record_weights) -> dict:
    """Everything that determines a run's output, as plain comparable values."""
    plain = {k: (np.asarray(v.detach().cpu() if torch.is_tensor(v) else v).tolist()) for k, v in params.to_dict().items()}
    return {
        "n_mice": int(n_mice), "n_sessions": int(n_sessions), "params": plain, "task": repr(task),
        "seeds": np.asarray(seeds).tolist(), "dtype": str(dtype), "record": (bool(record_trials), record_weights),
    }


def _trial_table(log: dict, names, n_sessions: int, T: int) -> pd.DataFrame:
    n_total, n_mice = log["choice"].shape
    cols = {k: v.T.reshape(-1).cpu().double().numpy() for k, v in log.items()}
    df = pd.DataFrame(
        {
            "mouse": np.repeat(np.asarray(names, dtype=object), n_total),
            "session": np.tile(np.repeat(np.arange(1, n_sessions + 1), T), n_mice),
            "trial": np.tile(np.arange(T), n_sessions * n_mice),
        }
    )
    c = cols.pop("signed_contrast")
    df["contrastLeft"] = np.clip(-c, 0, None) + 0.0
    df["contrastRight"] = np.clip(c, 0, None) + 0.0
    df["signed_contrast"] = c
    df["choice"] = cols.pop("choice").astype(np.int64)
    df["reward"] = cols.pop("reward")
    df["feedbackType"] = 2 * df["reward"] - 1
    for k, v in cols.items():
        df[k] = v > 0.5 if k == "stimulated" else v
    return df
