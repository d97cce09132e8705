"""Train a cohort of simulated mice: one batched loop over sessions, all mice at once.

Two engines run the same model: ``"reference"`` (:func:`mouse_rl.rollout.rollout`,
torch, any device, optogenetic hooks) and ``"fused"`` (:mod:`mouse_rl.sim_kernel`,
numba on the CPU, identical choices and weights). ``engine="auto"`` takes the
fused one where it applies and records in the result which one ran and why.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from envs import rng
from envs.cohort_env import CohortEnv
from envs.task import TaskConfig

from . import sim_kernel, sim_kernel_cuda
from .checkpoint import load_cohort_state, save_atomic
from .network import (Weights, encode, flat_weights, inactive, init_weights, preference_offsets,
                      weights_from_flat)
from .outputs import write_parquet
from .params import ModelParams, NetParams
from .rollout import EnvTrials, GivenStimuli, SampledChoices, Trial, rollout
from .schema import BEHAVIOUR_COLUMNS, KEY_COLUMNS, WEIGHT_COLUMNS

_TRIAL_FIELDS = list(sim_kernel.TRIAL_FIELDS)
#: What a run keeps: the per-trial table, per-session summaries only, or neither.
LOG_MODES = ("trials", "sessions", "none")
ENGINES = ("auto", "fused", "reference")


@dataclass
class CohortResult:
    """Output of :func:`simulate_cohort`.

    trials : one row per mouse and trial (schema in :mod:`mouse_rl.schema`);
        empty unless ``log="trials"``.
    weights : one row per mouse and session boundary: session 0 = initial
        weights, session s = weights after the last trial of session s.
    final_weights : the :class:`~mouse_rl.network.Weights` tensors at the end.
    seeds : per-mouse seeds used (rerun any mouse alone with its seed).
    sessions : one row per (mouse, session): ``n_trials``, ``accuracy`` (on c != 0) and
        ``p_right_left/zero/right`` (as :func:`mouse_rl.analysis.session_metrics`, from which
        bias and slopes follow), ``reward_rate`` and the trial counts ``n_left/zero/right``
        per stimulus side; empty with ``log="none"``.
    engine : ``"fused"`` or ``"reference"``: the engine that ran; ``meta["fallback"]``
        says why the reference ran under ``engine="auto"`` (None otherwise).
    """

    trials: pd.DataFrame
    weights: pd.DataFrame
    final_weights: Weights
    seeds: np.ndarray
    params: ModelParams
    task: TaskConfig
    meta: dict = field(default_factory=dict)
    sessions: pd.DataFrame = field(default_factory=pd.DataFrame)
    engine: str = "reference"

    def to_parquet(self, path) -> None:
        """Write the trial table to ``path`` and the weight snapshots beside it (``*.weights.parquet``)."""
        from pathlib import Path

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_table(self.trials, path)
        self.weights.to_parquet(path.with_suffix(".weights.parquet"), index=False)


def write_table(table: pd.DataFrame, path) -> None:
    """Write a trial (or session) table to parquet (:func:`mouse_rl.outputs.write_parquet`): key and
    behaviour columns dictionary-encoded, the model's float read-outs plain. ``pandas.read_parquet``
    gives ``table`` back."""
    write_parquet(table, path, dictionary=KEY_COLUMNS + BEHAVIOUR_COLUMNS)


def mouse_names(n_mice: int) -> list[str]:
    return [f"sim{i:04d}" for i in range(n_mice)]


def weights_frame(weights: Weights, session: int, names) -> pd.DataFrame:
    """One row per mouse with the weight columns of :data:`mouse_rl.schema.WEIGHT_COLUMNS`."""
    flat = flat_weights(weights)
    df = pd.DataFrame(flat.detach().cpu().double().numpy(), columns=WEIGHT_COLUMNS)
    df.insert(0, "session", session)
    df.insert(0, "mouse", list(names))
    return df


def choose_engine(engine: str, unsupported: str | None) -> tuple[str, str | None]:
    """(engine that runs, why the reference runs under ``"auto"`` or None); ``unsupported``: what the fused
    engine cannot do here (None: nothing)."""
    if engine not in ENGINES:
        raise ValueError(f"engine: must be one of {ENGINES}, got {engine!r}")
    if engine == "reference":
        return "reference", None
    if unsupported is None:
        return "fused", None
    if engine == "fused":
        raise ValueError(f"engine: 'fused' does not support {unsupported}; use engine='auto' or 'reference'")
    return "reference", f"the fused engine does not support {unsupported}"


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
    record_trials: bool | None = None,
    record_weights: str = "session",
    progress: bool = False,
    checkpoint=None,
    checkpoint_every: int = 1,
    stimulation=None,
    log: str = "trials",
    engine: str = "auto",
    threads: int | None = None,
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
    log : ``"trials"`` (per-trial table and per-session summaries), ``"sessions"``
        (summaries only: memory independent of the number of trials) or ``"none"``.
    record_trials : legacy switch: True = ``log="trials"``, False = ``log="none"``.
    record_weights : ``"session"`` (snapshots in ``result.weights`` at the start and after every
        session), ``"final"`` (only the snapshot after the last session: large cohorts) or ``"trial"``
        (session snapshots, and also the weights each trial's choice was made with, as weight columns
        of the trial table).
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
    engine : ``"auto"`` (fused on the CPU, or on a CUDA device where numba.cuda works, unless ``stimulation``
        is given or ``params.crosstalk`` is on: the cohort's fused engine has one stimulus table for all mice;
        the result's ``engine`` and ``meta["fallback"]`` say what ran), ``"fused"`` (error where it does not
        apply) or ``"reference"``.
    threads : numba threads of the fused engine (default: numba's setting); the process-wide
        torch and numba settings are left as they were.
    """
    params = params or ModelParams()
    task = task or TaskConfig()
    if trials_per_session is not None:
        task = TaskConfig(task.contrasts, task.probabilities, trials_per_session, task.repeat_after_error,
                          task.zero_reward_p_right)
    if int(n_mice) != n_mice or n_mice < 1:
        raise ValueError(f"n_mice: must be a positive integer, got {n_mice!r}")
    if int(n_sessions) != n_sessions or n_sessions < 1:
        raise ValueError(f"n_sessions: must be a positive integer, got {n_sessions!r}")
    if record_weights not in ("session", "final", "trial"):
        raise ValueError(f"record_weights: must be 'session', 'final' or 'trial', got {record_weights!r}")
    if log not in LOG_MODES:
        raise ValueError(f"log: must be one of {LOG_MODES}, got {log!r}")
    if record_trials is not None:
        if record_trials not in (True, False):
            raise ValueError(f"record_trials: must be True or False, got {record_trials!r}")
        log = "trials" if record_trials else "none"
    if record_weights == "trial" and log != "trials":
        raise ValueError(f"record_weights: 'trial' puts the weights in the trial table, which log={log!r} does "
                         "not keep; use log='trials' or record_weights='session'")
    if int(checkpoint_every) != checkpoint_every or checkpoint_every < 1:
        raise ValueError(f"checkpoint_every: must be a positive integer, got {checkpoint_every!r}")
    if threads is not None and (int(threads) != threads or threads < 1):
        raise ValueError(f"threads: must be a positive integer or None, got {threads!r}")
    hint = params.n_mice_hint()
    if hint is not None and hint not in (1, n_mice):
        raise ValueError(f"params: per-mouse parameters have length {hint} but n_mice={n_mice}")
    device = torch.device(device)
    crosstalk = params.crosstalk.detach() if torch.is_tensor(params.crosstalk) else params.crosstalk
    which, fallback = choose_engine(engine, "a stimulation hook (per-trial delta offsets)" if stimulation is not None
                                    else "crosstalk (the cohort's fused engine encodes one stimulus table for all "
                                    "mice)" if not inactive(crosstalk) else fused_unsupported(device, dtype))
    seed_values = rng.mouse_seeds(seed, n_mice) if seeds is None else np.asarray(seeds)
    env = CohortEnv(n_mice, seeds=seed_values, task=task, device=device, dtype=dtype)
    p = params.tensors(n_mice, device=device, dtype=dtype)
    names = mouse_names(n_mice)
    T = task.trials_per_session
    fields_logged = (_TRIAL_FIELDS + (WEIGHT_COLUMNS if record_weights == "trial" else [])
                     + (["stimulated"] if stimulation is not None else [])) if log == "trials" else []
    fingerprint = _fingerprint(n_mice, n_sessions, params, task, seed_values, dtype, log, record_weights)
    state = load_cohort_state(checkpoint, fingerprint, T, fields_logged if log == "trials" else None,
                              summary=log != "none")
    start = 0 if state is None else state["global_trial"]
    weights = init_weights(p, env.seeds, params.jitter) if state is None else Weights(state["a"].to(device),
                                                                                        state["U"].to(device))
    every_session = record_weights != "final"
    snapshots = ([weights_frame(weights, 0, names)] if every_session else []) if state is None else state["snapshots"]
    cohort = (_FusedCohort if which == "fused" else _ReferenceCohort)(
        env, p, params, weights, start, None if state is None else state["signed_contrast"], fields_logged,
        log != "none", n_sessions, threads, stimulation)
    if state is not None:
        cohort.restore(state, start)

    with torch.no_grad():
        bar = tqdm(total=n_sessions, initial=start // T, desc="sessions", unit="session", disable=not progress,
                   leave=False)
        for session in range(start // T + 1, n_sessions + 1):
            cohort.run((session - 1) * T, session * T)
            if every_session or session == n_sessions:
                snapshots.append(weights_frame(cohort.weights(), session, names))
            bar.update(1)
            if checkpoint is not None and session % checkpoint_every == 0 and session < n_sessions:
                save_atomic({"fingerprint": fingerprint, "global_trial": session * T, **cohort.state(session * T),
                             "snapshots": snapshots}, checkpoint)
        bar.close()
    final = cohort.weights()
    return CohortResult(_trial_table(cohort.trial_log(), names, n_sessions, T), pd.concat(snapshots, ignore_index=True),
                        final, seed_values, params, task,
                        {"device": str(device), "dtype": str(dtype), "seed": seed, "engine": which,
                         "fallback": fallback},
                        _session_table(cohort.summary(), names), which)


class _ReferenceCohort:
    """The cohort on the reference path: :func:`mouse_rl.rollout.rollout` on :class:`envs.CohortEnv`.

    Starts at global trial ``start`` with the current contrasts ``contrast`` (None: drawn).
    """

    def __init__(self, env, p, params, weights, start, contrast, fields_logged, summarise, n_sessions, threads,
                 stimulation):
        env.reset(options={"global_trial": start, **({} if contrast is None else {"signed_contrast": contrast})})
        self.env, self.p, self.params, self._weights = env, p, params, weights
        self.trials, self.choices = EnvTrials(env), SampledChoices(env.seeds, p.eta.dtype)
        n, T, dev = env.num_envs, env.task.trials_per_session, env.device
        self.log = {k: torch.empty((n_sessions * T, n), dtype=p.eta.dtype, device=dev) for k in fields_logged}
        self.counts = torch.zeros((n, n_sessions if summarise else 0, 8), dtype=torch.int64, device=dev)
        self.hook = None if stimulation is None else (
            lambda t, c, ch, r: stimulation(t, t // T + 1, c, ch, r, env.seeds))
        self.use_lapse = bool((p.lapse != 0).any())  # skip the lapse arithmetic when nobody lapses

    def run(self, start: int, stop: int) -> None:
        self._weights = rollout(self._weights, self.p, self.trials, self.choices, start, stop,
                                encoding=self.params.encoding, positive=self.params.positive,
                                zero_reward=self.params.zero_reward, use_lapse=self.use_lapse,
                                stimulation=self.hook, recorder=self.record)

    def record(self, tr: Trial) -> None:
        if self.log:
            f, s = tr.forward, tr.step
            row = [tr.signed_contrast, tr.choice, tr.reward, tr.p_right, *f.q_tot.unbind(-1), *f.q_stim.unbind(-1),
                   *f.q_const.unbind(-1), s.delta_tot, s.delta_stim, s.delta_const]
            if "a_L" in self.log:
                row += [*tr.weights.a.unbind(-1), *tr.weights.U.flatten(-2).unbind(-1)]
            if tr.stimulated is not None:
                row.append(tr.stimulated)
            for k, v in zip(self.log, row):
                self.log[k][tr.t] = v
        if self.counts.shape[1]:
            c, right = tr.signed_contrast, tr.choice == 1
            left, zero, rightward = c < 0, c == 0, c > 0
            add = torch.stack([torch.ones_like(right), left, zero, rightward, left & right, zero & right,
                               rightward & right, tr.reward > 0.5], -1)
            self.counts[:, tr.t // self.env.task.trials_per_session] += add

    def weights(self) -> Weights:
        return self._weights

    def state(self, t: int) -> dict:
        return {"a": self._weights.a.cpu(), "U": self._weights.U.cpu(),
                "signed_contrast": self.env.signed_contrast.cpu(),
                "log": {k: v[:t].T.contiguous().cpu() for k, v in self.log.items()} if self.log else None,
                **({"summary": self.counts.cpu()} if self.counts.shape[1] else {})}

    def restore(self, state: dict, t: int) -> None:
        for k in self.log:
            self.log[k][:t] = state["log"][k].T.to(self.log[k].device)
        if self.counts.shape[1]:
            self.counts[:] = state["summary"].to(self.counts.device)

    def trial_log(self) -> dict:
        return {k: v.T.cpu().numpy() for k, v in self.log.items()}

    def summary(self) -> np.ndarray:
        return self.counts.cpu().numpy()


class _FusedCohort:
    """The cohort on the fused engine: :mod:`mouse_rl.sim_kernel` on the CPU, :mod:`mouse_rl.sim_kernel_cuda`
    on a CUDA device; same state, logs and summaries as the reference."""

    def __init__(self, env, p, params, weights, start, contrast, fields_logged, summarise, n_sessions, threads,
                 stimulation):
        self.n, self.task, self.params, self.p, self.threads = env.num_envs, env.task, params, p, threads
        self.cuda = env.device.type == "cuda" or sim_kernel_cuda.simulated()
        self.seeds = env.seeds
        self.fields = fields_logged
        contrasts = torch.tensor(self.task.contrasts, dtype=p.eta.dtype)
        self.contrasts, self.x_table = contrasts.numpy(), encode(contrasts, params.encoding)[:, :2].numpy()
        if contrast is None:
            index = env.stimulus_index(start)
        else:
            match = torch.as_tensor(contrast, dtype=contrasts.dtype).cpu()[:, None] == contrasts[None, :]
            if not bool(match.any(1).all()):
                raise ValueError("signed_contrast: the cohort's current contrasts are not all contrasts of the task")
            index = match.int().argmax(1)
        dev, dtype = env.device, p.eta.dtype
        self.w = flat_weights(weights).to(dev, dtype).clone().contiguous()
        self.c_idx = index.to(dev, torch.int64).clone().contiguous()
        n_total = n_sessions * self.task.trials_per_session
        self.log_mode = (sim_kernel.LOG_NONE if not fields_logged else sim_kernel.LOG_TRIALS_WEIGHTS
                         if "a_L" in fields_logged else sim_kernel.LOG_TRIALS)
        shape = (len(fields_logged),) + ((n_total, self.n) if self.cuda else (self.n, n_total))
        self.log = torch.zeros(shape, dtype=dtype, device=dev) if fields_logged else None
        self.counts = torch.zeros((self.n, n_sessions if summarise else 0, 8), dtype=torch.int64, device=dev)
        self.use_lapse = bool((p.lapse != 0).any())

    def run(self, start: int, stop: int) -> None:
        task, params, p = self.task, self.params, self.p
        offset = preference_offsets(p, start, stop)  # (trials, mice), None without a side preference
        kw = dict(contrasts=self.contrasts, stimulus_x=self.x_table, cumulative=task.cumulative,
                  zero_reward_p_right=task.zero_reward_p_right, repeat_after_error=task.repeat_after_error,
                  positive=params.positive, zero_reward=params.zero_reward, use_lapse=self.use_lapse,
                  log_mode=self.log_mode)
        if self.cuda:
            sim_kernel_cuda.run_fused_cuda(self.w, self.c_idx, p.eta, p.beta, p.lapse, self.seeds, start, stop,
                                           task.trials_per_session, log=self.log, summary=self.counts,
                                           offset=offset, **kw)
            return
        sim_kernel.run_fused(sim_kernel.FusedState(self.w.numpy(), self.c_idx.numpy()), p.eta.numpy(),
                             p.beta.numpy(), p.lapse.numpy(), self.seeds.numpy(), start, stop,
                             task.trials_per_session, log=None if self.log is None else self.log.numpy(),
                             summary=self.counts.numpy(), offset=None if offset is None else offset.T.numpy(),
                             threads=self.threads, **kw)

    def weights(self) -> Weights:
        return weights_from_flat(self.w.clone())

    def _field(self, i: int, t: int | None = None) -> torch.Tensor:
        """Field ``i`` of the log, mouse-major ``(n_mice, t)``."""
        v = self.log[i].T if self.cuda else self.log[i]
        return v if t is None else v[:, :t]

    def state(self, t: int) -> dict:
        w = self.weights()
        return {"a": w.a.cpu(), "U": w.U.cpu(),
                "signed_contrast": torch.from_numpy(self.contrasts[self.c_idx.cpu().numpy()]),
                "log": {k: self._field(i, t).contiguous().cpu() for i, k in enumerate(self.fields)}
                if self.fields else None,
                **({"summary": self.counts.cpu()} if self.counts.shape[1] else {})}

    def restore(self, state: dict, t: int) -> None:
        for i, k in enumerate(self.fields):
            self._field(i)[:, :t] = state["log"][k].to(self.w.device)
        if self.counts.shape[1]:
            self.counts[:] = state["summary"].to(self.counts.device)

    def trial_log(self) -> dict:
        return {k: self._field(i).cpu().numpy() for i, k in enumerate(self.fields)}

    def summary(self) -> np.ndarray:
        return self.counts.cpu().numpy()


def _fingerprint(n_mice, n_sessions, params, task, seeds, dtype, log, record_weights) -> dict:
    """Everything that determines a run's output, as plain comparable values."""
    plain = {k: (np.asarray(v.detach().cpu() if torch.is_tensor(v) else v).tolist())
             for k, v in params.to_dict().items()}
    return {
        "n_mice": int(n_mice), "n_sessions": int(n_sessions), "params": plain, "task": repr(task),
        "seeds": np.asarray(seeds).tolist(), "dtype": str(dtype), "record": (log, record_weights),
    }


def repeat_names(names, n_each: int):
    """Column of mouse names, each repeated ``n_each`` times, in pandas' default string dtype.

    Built from codes through pyarrow where pandas stores strings in arrow (pandas >= 3): no Python
    string per row, and cast straight to the ``large_string`` pandas keeps (no second copy).
    """
    if getattr(pd.Series(["x"]).dtype, "storage", None) == "pyarrow":
        import pyarrow as pa

        codes = pa.array(np.repeat(np.arange(len(names), dtype=np.int32), n_each))
        text = pa.DictionaryArray.from_arrays(codes, pa.array(list(names), pa.large_string())).cast(pa.large_string())
        return pd.array(text, dtype="str")
    return np.repeat(np.asarray(names, dtype=object), n_each)


def _trial_table(log: dict, names, n_sessions: int, T: int) -> pd.DataFrame:
    """The trial table from mouse-major logs ``{field: (n_mice, n_sessions * T)}``; empty without logs.

    Vectorised over the whole log: float64 logs become columns without a copy (views of the log), and each
    derived column is one array computed in place (no per-row Python work, no temporaries).
    """
    if not log:
        return pd.DataFrame()
    n_mice, n_total = log["choice"].shape
    cols = {k: np.asarray(v, dtype=np.float64).reshape(-1) for k, v in log.items()}
    c = cols.pop("signed_contrast")
    reward = cols.pop("reward")
    left = np.negative(c)
    np.maximum(left, 0.0, out=left)
    left += 0.0  # -0.0 -> 0.0
    right = np.maximum(c, 0.0)
    right += 0.0
    feedback = np.multiply(reward, 2.0)
    feedback -= 1.0
    df = {
        "mouse": repeat_names(names, n_total),
        "session": np.tile(np.repeat(np.arange(1, n_sessions + 1), T), n_mice),
        "trial": np.tile(np.arange(T), n_sessions * n_mice),
        "contrastLeft": left,
        "contrastRight": right,
        "signed_contrast": c,
        "choice": cols.pop("choice").astype(np.int64),
        "reward": reward,
        "feedbackType": feedback,
    }
    for k, v in cols.items():
        df[k] = v > 0.5 if k == "stimulated" else v
    return pd.DataFrame(df, copy=False)


def _session_table(counts: np.ndarray, names) -> pd.DataFrame:
    """Per-(mouse, session) behaviour from the counters of :data:`mouse_rl.sim_kernel.SUMMARY_FIELDS`."""
    n_mice, S, _ = counts.shape
    if S == 0:
        return pd.DataFrame()
    n, n_left, n_zero, n_right, r_left, r_zero, r_right, rewarded = np.moveaxis(counts.reshape(-1, 8), -1, 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return pd.DataFrame({
            "mouse": repeat_names(names, S),
            "session": np.tile(np.arange(1, S + 1), n_mice),
            "n_trials": n,
            "accuracy": ((n_left - r_left) + r_right) / (n_left + n_right),
            "p_right_left": r_left / n_left,
            "p_right_zero": r_zero / n_zero,
            "p_right_right": r_right / n_right,
            "reward_rate": rewarded / n,
            "n_left": n_left,
            "n_zero": n_zero,
            "n_right": n_right,
        })


def fused_unsupported(device: torch.device, dtype: torch.dtype, requires_grad: bool = False) -> str | None:
    """Why the fused engine cannot run these tensors (None: it can): CPU, or CUDA where numba.cuda works."""
    if device.type not in ("cpu", "cuda"):
        return f"device {str(device)!r}"
    if device.type == "cuda":  # a CUDA torch without a working numba.cuda
        why = sim_kernel_cuda.unavailable_reason()
        if why is not None:
            return f"device {str(device)!r}: {why}"
    if dtype not in (torch.float32, torch.float64):
        return f"dtype {dtype}"
    if requires_grad:
        return "parameters that require grad"
    return None


def simulate_on_stimuli(signed_contrast: torch.Tensor, valid: torch.Tensor, params: NetParams, seeds,
                        init: Weights | None = None, encoding: str = "side", positive: bool = True,
                        zero_reward: str = "expected", zero_reward_p_right: float = 0.5,
                        engine: str = "auto", cuts=(), between=None,
                        offset: torch.Tensor | None = None,
                        gain: torch.Tensor | None = None,
                        corrections: int = 0, corrections_forced: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Free-running networks on given stimulus sequences (e.g. each mouse's own), choosing for themselves.

    Parameters
    ----------
    signed_contrast, valid : ``(T, B)`` stimuli (fractions) and which trials exist (others neither
        choose nor learn).
    params : :class:`NetParams` of ``(B,)`` tensors; ``init`` the starting :class:`Weights`
        (``(B, 3)``, ``(B, 2, 3)``; default :func:`init_weights` without jitter).
    seeds : ``(B,)`` per-column seeds: choices from the ``CHOICE`` stream, the rewarded side at
        c = 0 (Right with ``zero_reward_p_right``) from ``ZERO_REWARD_SIDE``, at counter = row index.
    engine : ``"auto"`` (fused on the CPU, else the reference rollout: same numbers), ``"fused"`` or
        ``"reference"``.
    cuts, between : optional ascending trial indices in ``1 .. T-1`` before which ``between(t, w)`` returns
        the flat weights ``(B, 9)`` (:func:`mouse_rl.network.flat_weights` order) to go on with, e.g. an
        overnight jump (:mod:`mouse_rl.fit.drift`); the run goes in segments between the cuts, never
        changing what happens within one. With ``between`` only the CPU runs the fused engine; under
        ``"auto"`` a fall-back to the reference rollout is warned about.
    offset : optional ``(T, B)`` logit offset added to every trial's policy beside the side preference (e.g.
        the session bias, :func:`mouse_rl.fit.session_effects.session_offsets`); None = 0.
    gain : optional ``(T, B)`` positive factors on ``beta`` of every trial's policy (e.g. the session gain,
        :func:`mouse_rl.fit.session_effects.session_gains`); None = 1. The run goes in segments between the
        rows where any column's gain changes (beta is the engines' per-column input), so it suits gains
        that change rarely, e.g. once a session.
    corrections : the most hidden correction trials after each error at c != 0 (0 = none, at most
        :data:`envs.rng.MAX_CORRECTIONS`): the network sees the same stimulus again until it chooses correctly,
        learning from every such trial, none of which is in the output -- the repeat trials a dataset removed
        (the Liebana et al. 2025 data). Choices from the ``CORRECTION`` stream; trial t's policy offset and gain.
        The CPU runs them fused; other devices on the reference rollout.
    corrections_forced : the hidden trials choose correctly, so each error is followed by one (the end of its
        correction run, the part a teacher-forced fit knows: :mod:`mouse_rl.fit.corrections`).

    Returns
    -------
    ``(choice, p_right)``, each ``(T, B)``: sampled choices (0 = Left, 1 = Right; 0 where not valid)
    and P(Right) before each choice.
    """
    device, dtype = signed_contrast.device, params.eta.dtype
    seeds = rng.as_seed_tensor(seeds, device)
    w = init_weights(params) if init is None else Weights(*init)
    T, B = signed_contrast.shape
    if offset is not None:
        offset = torch.as_tensor(offset, dtype=dtype, device=device)
        if offset.shape != (T, B):
            raise ValueError(f"offset: expected shape {(T, B)} (trials x columns), got {tuple(offset.shape)}")
    drift_cuts = set(cuts) if between is not None else set()
    changes = set()
    if gain is not None:
        gain = torch.as_tensor(gain, dtype=dtype, device=device)
        if gain.shape != (T, B):
            raise ValueError(f"gain: expected shape {(T, B)} (trials x columns), got {tuple(gain.shape)}")
        if not bool(torch.isfinite(gain).all()) or bool((gain <= 0).any()):
            raise ValueError("gain: must be finite and > 0")
        changes = set((torch.nonzero((gain[1:] != gain[:-1]).any(1)).reshape(-1) + 1).tolist())
    bounds = [0, *sorted(drift_cuts | changes), T]

    def beta_at(t0: int) -> torch.Tensor:
        return params.beta if gain is None else params.beta * gain[t0]

    if isinstance(corrections, bool) or not (isinstance(corrections, (int, np.integer))
                                             and 0 <= corrections <= rng.MAX_CORRECTIONS):
        raise ValueError(f"corrections: expected the most hidden trials per error, an integer 0 .. "
                         f"{rng.MAX_CORRECTIONS}, got {corrections!r}")
    corrections = int(corrections)
    unsupported = fused_unsupported(device, dtype, any(torch.is_tensor(v) and v.requires_grad for v in (*params, *w)))
    if unsupported is None and between is not None and device.type != "cpu":
        unsupported = f"device {str(device)!r} with weights changed between segments (CPU only)"
    if unsupported is None and corrections and device.type != "cpu":
        unsupported = f"device {str(device)!r} with hidden correction trials (CPU only)"
    which, why = choose_engine(engine, unsupported)
    if why is not None and between is not None:
        warnings.warn(f"simulate_on_stimuli: reference rollout ({why})", RuntimeWarning, stacklevel=2)
    c = signed_contrast.to(dtype)
    if which == "reference":
        out = torch.zeros((2, T, B), dtype=dtype, device=device)

        def record(tr: Trial) -> None:
            out[0, tr.t] = torch.where(valid[tr.t], tr.choice, 0)
            out[1, tr.t] = tr.p_right

        stim, choices = GivenStimuli(c, seeds, zero_reward_p_right), SampledChoices(seeds, dtype)
        for t0, t1 in zip(bounds[:-1], bounds[1:]):
            if t0 in drift_cuts:
                w = weights_from_flat(between(t0, flat_weights(w)))
            w = rollout(w, params._replace(beta=beta_at(t0)), stim, choices, t0, t1, encoding=encoding,
                        positive=positive, zero_reward=zero_reward, learn=valid, recorder=record, offset=offset,
                        corrections=corrections, corrections_forced=corrections_forced)
        return out[0].long(), out[1]
    opts = dict(zero_reward_p_right=zero_reward_p_right, positive=positive, zero_reward=zero_reward, use_lapse=True,
                log_mode=sim_kernel.LOG_CHOICES)
    x = encode(c, encoding, params.crosstalk)[..., :2]
    pref = preference_offsets(params, 0, T)  # (T, B), None without a side preference
    if pref is not None:
        offset = pref if offset is None else pref + offset
    offset = None if offset is None else offset.detach().to(dtype)
    w0 = flat_weights(w).detach().to(dtype).clone().contiguous()
    if device.type == "cuda" or (sim_kernel_cuda.simulated() and not corrections):  # numba's simulator (CPU)
        log = torch.zeros((2, T, B), dtype=dtype, device=device)
        for t0, t1 in zip(bounds[:-1], bounds[1:]):
            if t0 in drift_cuts:
                w0.copy_(between(t0, w0))
            sim_kernel_cuda.run_fused_cuda(w0, torch.zeros(B, dtype=torch.int64, device=device), params.eta.detach(),
                                           beta_at(t0).detach().contiguous(), params.lapse.detach(), seeds, t0, t1, max(T, 1),
                                           given_contrast=c.detach(), given_x=x.detach(), valid=valid, log=log,
                                           offset=None if offset is None else offset[t0:t1], **opts)
        return log[0].long(), log[1]
    host = lambda v: v.detach().cpu().numpy()  # noqa: E731
    state = sim_kernel.FusedState(host(w0), np.zeros(B, dtype=np.int64))
    log = np.zeros((2, B, T), dtype=state.weights.dtype)
    dt = state.weights.dtype  # contiguous once: the kernel would copy strided views on every segment
    given = dict(given_contrast=np.ascontiguousarray(host(c).T, dt),
                 given_x=np.ascontiguousarray(host(x).transpose(1, 0, 2), dt),
                 valid=np.ascontiguousarray(host(valid).T, np.bool_))
    eta, lapse = (np.ascontiguousarray(host(v), dt) for v in (params.eta, params.lapse))
    seeds_np = host(seeds)
    offset = None if offset is None else np.ascontiguousarray(host(offset).T, dt)
    for t0, t1 in zip(bounds[:-1], bounds[1:]):
        if t0 in drift_cuts:
            state.weights[:] = host(between(t0, torch.from_numpy(state.weights)))
        beta = np.ascontiguousarray(host(beta_at(t0)), dt)
        sim_kernel.run_fused(state, eta, beta, lapse, seeds_np, t0, t1, max(T, 1), log=log, **given, **opts,
                             offset=None if offset is None else offset[:, t0:t1], corrections=corrections,
                             corrections_forced=corrections_forced)
    return torch.from_numpy(log[0].T.astype(np.int64)), torch.from_numpy(np.ascontiguousarray(log[1].T))
