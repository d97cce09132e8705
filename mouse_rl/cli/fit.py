"""``mouse-rl fit``: fit the network to many mice in one batched run; tables and per-mouse plots."""
from __future__ import annotations

import math
import re
import sys
import warnings
from pathlib import Path

from .options import add_model_options, add_reward_rule_option


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("fit", help="fit the network to mice (batched), with optional cross-validation",
                              description=__doc__)
    p.add_argument("data", nargs="+", type=Path,
                   help="trial files or folders, concatenated: liebana2025 folder or .npy; an IBL ALF session "
                        "folder, subject folder of sessions or ONE cache; the Liebana et al. release CSV; "
                        ".parquet/.csv trial tables (IBL trials tables included)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--mice", nargs="+", default=None, help="only these mice")
    add_reward_rule_option(p)
    p.add_argument("--single-block", action="store_true",
                   help="load .npy files without session_lengths (e.g. DAP044) as one unknown-session block")
    p.add_argument("--restarts", type=int, default=8,
                   help="starts per mouse run to convergence, chosen per mouse from 4x as many screened "
                        "starts (default %(default)s, at most 1000)")
    p.add_argument("--max-iter", type=int, default=100,
                   help="Newton iterations per start (L-BFGS iterations / Adam steps) (default %(default)s, "
                        "at most 100000)")
    p.add_argument("--method", choices=["newton", "lbfgs", "adam"], default="newton",
                   help="newton: per-mouse trust-region Newton on the exact Hessian of the fused kernel "
                        "(default); lbfgs/adam: batched torch unroll (for comparison)")
    p.add_argument("--engine", choices=["eager", "compile"], default="eager",
                   help="torch unroll of --method lbfgs/adam ('compile' fuses trials with torch.compile)")
    p.add_argument("--no-lapse", dest="fit_lapse", action="store_false",
                   help="do not fit the lapse: fix it at --lapse (default 0)")
    p.add_argument("--shallow", action="store_true", help="fit the shallow control (w0 = 1 fixed)")
    p.add_argument("--fit-skew", action="store_true",
                   help="also fit stim_skew, a per-side skew of the initial stimulus channels (an option beyond "
                        "MODEL.md, where both start equal): lets a fit say one stimulus is learned much later, as "
                        "in one-sided learners; --stim-skew sets its value when it is not fitted")
    p.add_argument("--fit-k", action="store_true",
                   help="also fit k, the constant (bias) channel's initial cortical gain, which MODEL.md fixes at 1: "
                        "with it the bias weights' start (b_L k, b_R k) and their learning rate (eta k^2 while the "
                        "gain lasts) are set apart; --k sets its value when it is not fitted")
    p.add_argument("--fit-crosstalk", action="store_true",
                   help="also fit crosstalk, the fraction by which a grating also drives the other side's stimulus "
                        "input (an option beyond MODEL.md, where it is 0): lets the fit make the non-monotonic late "
                        "psychometric of many one-sided learners; at most two of --fit-skew, --fit-k, "
                        "--fit-crosstalk; --crosstalk sets its value when it is not fitted")
    p.add_argument("--fit-side-pref", action="store_true",
                   help="also fit an innate side preference side_pref * exp(-trial / side_pref_tau) added to the "
                        "policy's logit (an option beyond MODEL.md, where it is 0): the naive mouse's start bias, "
                        "fading whatever the bias weights learn; --side-pref and --side-pref-tau set it when it is "
                        "not fitted")
    p.add_argument("--session-effects", action="store_true",
                   help="after the fit, each mouse's day-to-day session effects: a N(0, sd^2) logit offset (days "
                        "on which it leans more to one side) and a log-normal gain on beta (days on which it follows "
                        "the stimulus more closely), drawn afresh every session, their sds by the marginal "
                        "likelihood of the mouse's choices at the fitted parameters (mouse_rl.fit.session_effects; "
                        "an option beyond MODEL.md); adds session_* columns and `mouse-rl check` simulates them")
    p.add_argument("--model", choices=["network", "noisy-network"], default="network",
                   help="network: the deterministic learner (default); noisy-network: its learning rule as the "
                        "drift of noisy trial-by-trial weights (mouse_rl.fit.statespace; writes noisy_params.csv, "
                        "noisy_weights.parquet and a weight-trajectory plot per mouse)")
    p.add_argument("--noise", choices=["log", "linear"], default="log",
                   help="--model noisy-network: noise on the log-weights (default; weights stay positive) or on the "
                        "weights themselves (the rule without |.|; with --frozen a and --encoding magnitude, eta = 0 "
                        "is PsyTrack's random walk)")
    p.add_argument("--frozen", nargs="+", choices=["a", "U"], default=None,
                   help="--model noisy-network: weight groups held at their initial values (no learning, no noise)")
    p.add_argument("--sigma-per", choices=["group", "column"], default="group",
                   help="--model noisy-network: one noise sd per weight group (default) or, for U, one per input "
                        "column (stimulus left, stimulus right, bias: PsyTrack's per-weight sds)")
    p.add_argument("--noisy-start", nargs="+", choices=["network", "defaults", "psytrack"], default=["network"],
                   help="--model noisy-network: start(s) of the evidence search; with several, each mouse keeps the "
                        "search that ends at the higher Laplace evidence (network psytrack: the best held-out "
                        "configuration in README; default network)")
    p.add_argument("--give-up", nargs=2, type=float, default=None, metavar=("K", "NATS"),
                   help="--model noisy-network with several --noisy-start: from iteration K on, stop a later start's "
                        "search for a mouse whose evidence trails the best by more than NATS")
    p.add_argument("--noisy-population", nargs="+", default=[], metavar="NAME",
                   help="--model noisy-network: fitted hyperparameters (e.g. beta sigma_U) given a population prior "
                        "estimated across the mice of the run (empirical Bayes) instead of each mouse's weak prior: "
                        "a mouse whose data leave one unidentified is pulled to the cohort's value; the fit of a "
                        "mouse then depends on the other mice fitted with it")
    p.add_argument("--criterion", choices=["teacher-forced", "free-running"], default="teacher-forced",
                   help="teacher-forced: MAP on the mouse's own choices (default); free-running: choose each mouse's "
                        "parameters (the default set and stim_skew) so that free-running copies reproduce its "
                        "per-session choice rates (energy score; mouse_rl.fit.freerun; an option, slower; writes "
                        "freerun_params.csv; `mouse-rl check` draws parameters from the choices' expected information "
                        "at the fitted point plus the weak prior)")
    p.add_argument("--drift", nargs="+", choices=["bias", "stim"], default=None,
                   help="--criterion free-running: weight groups whose copies drift overnight (log-normal jump of "
                        "fitted sd sigma_day_<group> at every session start; mouse_rl.fit.drift; `mouse-rl check` "
                        "simulates it)")
    p.add_argument("--summary-weight", type=float, default=0.0,
                   help="--criterion free-running: weight of each mouse's early bias and late slope difference in "
                        "the score beside its session rates (default 0; 1 with --drift bias stim met issue 10's "
                        "check targets on the Liebana mice, see README)")
    p.add_argument("--population", action="store_true",
                   help="hierarchical fit: a Gaussian population over the parameters by empirical Bayes (EM), "
                        "every mouse's MAP under it; writes population.csv and population_history.csv. Needs "
                        "2 or more mice and warns until the mice outnumber the fitted parameters (a covariance "
                        "from fewer mice is rank-deficient)")
    p.add_argument("--population-iter", type=int, default=10,
                   help="EM iterations of --population (default %(default)s)")
    p.add_argument("--ml", dest="map_prior", action="store_false",
                   help="maximum likelihood: drop the weakly informative priors of the default MAP fit")
    p.add_argument("--cv", choices=["none", "time", "interleaved"], default="none",
                   help="also report held-out bits/trial (default none)")
    p.add_argument("--predictive", choices=["laplace", "plugin"], default="laplace",
                   help="with --cv: score held-out choices by the Laplace posterior predictive (default; the "
                        "plug-in score is written beside it) or at the fitted parameters only")
    p.add_argument("--samples", type=int, default=64, help="posterior draws per mouse for --predictive laplace")
    p.add_argument("--no-plots", dest="plots", action="store_false", help="skip per-mouse PNGs")
    p.add_argument("--device", default="cpu")
    p.add_argument("--backend", choices=["batched", "local", "ray"], default="batched",
                   help="batched: one batched fit in this process (default); local/ray: split the mice into "
                        "--workers chunks fitted on local processes or Ray tasks")
    p.add_argument("--address", default=None, help="Ray cluster address (with --backend ray)")
    p.add_argument("--workers", type=int, default=2, help="chunks / worker processes (default %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_model_options(p, fitting=True)
    defaults = {a.dest: (a.option_strings[0] if a.option_strings else a.dest, a.default)
                for a in p._actions if a.dest != "help"}
    p.set_defaults(func=run, option_defaults=defaults,
                   option_defaults_by_flag={flag: dest for dest, (flag, _) in defaults.items()})


#: The library's hint for a .npy file without session_lengths (it names the Python API, not the CLI).
_API_HINT = re.compile(r"To load it anyway.*?missing_sessions='single_block'\)\.?")


def _cli_hint(message: str, option: str | None) -> str:
    """``message`` with the Python-API hint for a file without session_lengths replaced by the CLI's."""
    hint = (f"Rerun with {option} to load it as one unknown-session block (session 1)." if option else
            "This command needs session boundaries, so leave this file out.")
    return _API_HINT.sub(hint, message)


def load_many(paths, mice=None, single_block: bool = False, reward_rule: str = "stimulus",
              single_block_option: str | None = "--single-block"):
    """Load and concatenate the trial files / folders of a command's DATA arguments.

    ``single_block``: load ``.npy`` files without ``session_lengths`` (e.g. DAP044), alone or in a
    liebana2025 folder, as one unknown-session block. ``single_block_option``: the option that turns this on
    in the calling command (named in the error for such a file), or None where the command has none.
    ``mice``: only these mice; from a liebana2025 folder only their files are read.
    """
    import pandas as pd

    from ..data import DataFormatError, load_trials
    from ..data.loaders import folder_kind
    from ..data.psytrax import mouse_from_path

    def load_folder(path):
        """A liebana2025 folder: only the --mice asked for; with --single-block every file one by one."""
        files = {mouse_from_path(f): f for f in sorted(path.glob("*_data.npy"))}
        wanted = files if mice is None else {m: files[m] for m in mice if m in files}
        if not wanted:
            return None
        if not single_block:
            return load_trials(path, mice=list(wanted)) if mice is not None else load_trials(path)
        tables, skipped = [], []
        for name, f in wanted.items():
            try:
                tables.append(load_trials(f, missing_sessions="single_block"))
            except DataFormatError as err:
                skipped.append(f"{name}: {err}")
        if skipped:
            warnings.warn(f"skipped {len(skipped)} invalid file(s) in {path} ({'; '.join(skipped)})", UserWarning,
                          stacklevel=3)
        if not tables:
            raise DataFormatError(f"{path}: no valid *_data.npy files")
        return pd.concat(tables, ignore_index=True)

    def load(path):
        if path.is_dir() and path.suffix != ".npy" and folder_kind(path) == "liebana":
            try:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    return load_folder(path)
            finally:  # re-issued (also when the folder fails) with the CLI's hint instead of the Python API's
                for w in caught:
                    warnings.warn(_cli_hint(str(w.message), single_block_option), w.category, stacklevel=3)
        if single_block and path.suffix == ".npy":
            return load_trials(path, missing_sessions="single_block")
        if reward_rule != "stimulus" and (path.suffix in (".csv", ".parquet") or path.is_dir()):  # stored rewards
            return load_trials(path, reward_rule=reward_rule)
        try:
            return load_trials(path)
        except DataFormatError as err:
            raise DataFormatError(_cli_hint(str(err), single_block_option)) from None

    if reward_rule != "stimulus" and not any(p.suffix in (".csv", ".parquet") or p.is_dir() for p in paths):
        raise ValueError(f"--reward-rule {reward_rule}: applies to .csv/.parquet trial tables and folders, not "
                         f"{', '.join(p.name for p in paths)} (.npy files are always read with the stimulus rule)")
    if mice is not None:
        mice = [str(m) for m in mice]
    tables = [t for t in (load(p) for p in paths) if t is not None]
    if not tables:
        raise ValueError(f"--mice: not in the data: {sorted(set(mice))}")
    df = pd.concat(tables, ignore_index=True)
    if mice is not None:
        missing = sorted(set(mice) - set(df["mouse"].astype(str)))
        if missing:
            raise ValueError(f"--mice: not in the data: {missing}")
        df = df[df["mouse"].astype(str).isin(mice)]
    return df


def save_laplace(outputs, res, hessian=None, sigma_day=None, session_bias_sd=None, session_gain_sd=None,
                 **options) -> None:
    """Write what ``mouse-rl check`` needs beside the tables: ``fit_laplace.npz`` (no pickle) and ``fit_options.json``.

    ``outputs``: an :class:`mouse_rl.outputs.OutputSet` (or anything with ``path(name)``); ``res``: a fit result
    with ``params`` (column ``mouse``), ``u``, ``transform`` and ``options``. ``hessian`` replaces
    ``res.hessian`` (a fit without one writes zeros); ``sigma_day`` ``(M, 9)``: the copies' overnight drift
    per weight (:func:`mouse_rl.fit.drift.sigma_matrix`; written only when given); ``session_bias_sd``, ``session_gain_sd``
    ``(M,)``: the copies' session effects (:mod:`mouse_rl.fit.session_effects`; rows of ``res.params``; written
    only when given); ``options`` are added to ``fit_options.json``.
    """
    import json

    import numpy as np

    from ..params import PARAMS

    hessian = res.hessian if hessian is None else hessian
    with open(outputs.path("fit_laplace.npz"), "wb") as fh:  # a handle: np.savez would append ".npz" to a path
        arrays = {} if sigma_day is None else {"sigma_day": np.asarray(sigma_day, float)}
        for key, v in (("session_bias_sd", session_bias_sd), ("session_gain_sd", session_gain_sd)):
            if v is not None:
                arrays[key] = np.asarray(v, float)
        np.savez(fh, mice=np.array(res.params["mouse"].astype(str).tolist()), u=res.u, hessian=hessian,
                 free=np.array(list(res.transform.free)), **arrays)
    fixed = res.transform.fixed
    opts = {"free": list(res.transform.free), "encoding": fixed.encoding, "positive": bool(fixed.positive),
            "zero_reward": fixed.zero_reward,
            "fixed": {name: float(np.asarray(getattr(fixed, name)).reshape(-1)[0]) for name in PARAMS},
            "map_prior": bool(res.options.get("map_prior", False)), **options}
    outputs.path("fit_options.json").write_text(json.dumps(opts, indent=1))


#: Options that ``--criterion free-running`` uses; any other option set away from its default is refused.
FREERUN_OPTIONS = {"data", "out", "mice", "reward_rule", "single_block", "seed", "quiet", "encoding",
                   "zero_reward", "criterion", "plots", "k", "drift", "summary_weight"}

#: Options that ``--model noisy-network`` uses; any other option set away from its default is refused.
NOISY_OPTIONS = {"data", "out", "mice", "reward_rule", "single_block", "restarts", "seed", "quiet", "plots",
                 "encoding", "zero_reward", "model", "noise", "frozen", "sigma_per", "noisy_start", "give_up",
                 "noisy_population"}


def run(args) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import torch

    from ..fit import DEFAULT_FREE, fit_mice
    from ..fit.transforms import with_options
    from ..fit.cv import NetworkModel, cross_validate, summarise
    from ..fit.labels import strategy_labels
    from ..fit.plots import plot_mouse_fit
    from ..outputs import OutputSet
    from ..params import PARAMS
    from .options import check_fixed_values, model_params
    from ..safe_names import unique_filenames

    check_fit_options(args)
    if args.model == "noisy-network":
        refuse_unused(args, NOISY_OPTIONS, "--model noisy-network", "the noisy learner (it takes the data options, "
                      "--restarts and --seed of its network start, --encoding, --zero-reward, --noise, --frozen, --sigma-per, "
                      "--noisy-start, --give-up, --noisy-population, --no-plots and --quiet)")
        _check_noisy_population(args)
    if args.criterion == "free-running":
        refuse_unused(args, FREERUN_OPTIONS, "--criterion free-running", "the free-running fit (it takes the data "
                      "options, --seed, --encoding, --zero-reward, --k, --drift, --summary-weight and --quiet)")
    if args.backend == "ray":
        from ..sweep.backends import import_ray

        import_ray()  # clear install hint (exit 2) before any data is loaded
    trials = load_many(args.data, args.mice, args.single_block, args.reward_rule)
    if args.model == "noisy-network":
        _check_noisy_cohort(args, trials)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    if args.model == "noisy-network":
        return run_noisy(args, trials)
    if args.criterion == "free-running":
        return run_freerun(args, trials)
    if args.fit_skew and args.fit_k and args.fit_crosstalk:
        raise ValueError("--fit-crosstalk: at most two of --fit-skew, --fit-k and --fit-crosstalk at once")
    free = with_options(args.fit_skew, args.fit_k, base=tuple(n for n in DEFAULT_FREE if not (args.shallow and n == "w0")),
                        crosstalk=args.fit_crosstalk, side_pref=args.fit_side_pref)
    check_fixed_values(args, [n for n in free if n != "lapse" or args.fit_lapse])
    if args.shallow and args.w0 != PARAMS["w0"].default:
        raise ValueError(f"--w0: --shallow fixes w0 = 1, got --w0 {args.w0:g}; drop one of them")
    fixed = model_params(args)
    fixed = fixed.replace(w0=1.0) if args.shallow else fixed
    if args.population:
        check_population_size(trials, len(free) - (0 if args.fit_lapse or "lapse" not in free else 1))
    kw = dict(n_restarts=args.restarts, max_iter=args.max_iter, method=args.method, free=free, fixed=fixed,
              fit_lapse=args.fit_lapse, device=args.device, seed=args.seed, engine=args.engine)
    if args.backend == "batched":
        res = fit_mice(trials, map_prior=args.map_prior, progress=not args.quiet, dtype=torch.float64,
                       population=args.population, population_iter=args.population_iter, **kw)
    else:
        from ..fit.distributed import fit_mice_distributed

        res = fit_mice_distributed(trials, args.workers, args.backend, args.address, args.workers,
                                   map_prior=args.map_prior, dtype=torch.float64, **kw)
    per_mouse, per_session = strategy_labels(res.trials, res.params, encoding=fixed.encoding)
    table = res.params.merge(per_mouse, on="mouse", how="left")
    session = {}
    if args.session_effects:
        from ..fit.session_effects import fit_session_effects

        se = fit_session_effects(res.trials, res.params, encoding=fixed.encoding, positive=fixed.positive,
                                 zero_reward=fixed.zero_reward)
        se = se.rename(columns={"loglik": "session_loglik", "loglik_gain": "session_loglik_gain"})
        table = table.merge(se.drop(columns="n_sessions"), on="mouse", how="left")
        session = {k: table[k].to_numpy(float) for k in ("session_bias_sd", "session_gain_sd")}  # rows of res.params
    if args.cv != "none":
        net_kw = {k: v for k, v in kw.items() if k not in ("fit_lapse",)}
        net_kw["n_restarts"] = args.restarts
        factory = {"network": lambda d: NetworkModel(d, fit_lapse=args.fit_lapse,
                                                     **{k: v for k, v in net_kw.items() if k != "device"},
                                                     device=args.device, predictive=args.predictive,
                                                     n_samples=args.samples)}
        cv = cross_validate(trials, factory, args.cv, progress=not args.quiet)
        cols = [c for c in ("bits_per_trial", "bits_per_trial_plugin") if c in cv]
        table = table.merge(cv[["mouse", *cols]].rename(columns={c: f"cv_{args.cv}_{c}" for c in cols}),
                            on="mouse", how="left")
        print(summarise(cv).to_string(index=False))
    with OutputSet(out, meta={"command": "fit"}) as outputs:  # all files renamed together, then the run marker
        if args.cv != "none":
            cv.to_csv(outputs.path(f"cv_{args.cv}.csv"), index=False)
        table.to_parquet(outputs.path("fit_results.parquet"), index=False)
        table.to_csv(outputs.path("fit_results.csv"), index=False)
        res.trials.to_parquet(outputs.path("fit_trials.parquet"), index=False)
        res.restarts.to_csv(outputs.path("fit_restarts.csv"), index=False)
        if res.u is not None:
            save_laplace(outputs, res, **session)
        per_session.to_csv(outputs.path("strategies_per_session.csv"), index=False)
        if res.population is not None:
            res.population.population().to_csv(outputs.path("population.csv"), index=False)
            res.population.history.to_csv(outputs.path("population_history.csv"), index=False)
        if args.plots:
            stems = unique_filenames(table["mouse"])  # mouse ids come from the data: sanitised, kept inside --out
            for mouse in table["mouse"]:
                fig = plot_mouse_fit(res.trials, mouse)
                fig.savefig(outputs.path(f"plots/{stems[str(mouse)]}.png"), dpi=110, format="png")
    cols = [c for c in ["mouse", "eta", "beta", "w0", "s0", "b_L", "b_R", "lapse",
                        *(n for n in free if n not in DEFAULT_FREE), "session_bias_sd", "session_gain_sd",
                        "bits_per_trial",
                        "learner_side_data", "learner_side_model"] if c in table]
    sides = {c: "undetermined" for c in ("learner_side_data", "learner_side_model") if c in table}  # too few sessions
    print(table[cols].fillna(sides).to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(f"wrote {out / 'fit_results.parquet'} ({len(table)} mice, {res.options['seconds']:.1f} s fit)")
    if "converged" in table:
        warn_not_converged(table)
    return 0


#: Upper bounds of --restarts and --max-iter: beyond them a fit runs for days and gains nothing.
MAX_RESTARTS, MAX_ITER = 1000, 100_000


def _changed(args, *dests):
    """The flags among ``dests`` that the user set away from their defaults."""
    defaults = getattr(args, "option_defaults", {})
    return [defaults[d][0] for d in dests if d in defaults and getattr(args, d, defaults[d][1]) != defaults[d][1]]


def refuse_unused(args, allowed, choice: str, what: str) -> None:
    """Refuse every option outside ``allowed`` (dests) that the user set: ``choice`` (e.g. ``--model
    noisy-network``) would ignore it; ``what`` names the fit and the options it takes."""
    changed = _changed(args, *(d for d in getattr(args, "option_defaults", {}) if d not in allowed))
    if changed:
        raise ValueError(f"{choice}: {', '.join(changed)} do(es) not apply to {what}")


def _refuse_set(args, dests, applies_to: str) -> None:
    """Refuse the first option among ``dests`` set away from its default: it ``applies_to`` another fit."""
    changed = _changed(args, *dests)
    if changed:
        value = getattr(args, args.option_defaults_by_flag[changed[0]])
        if isinstance(value, list):  # nargs options: words (--frozen a U) or numbers (--give-up 3 10)
            value = " ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
        raise ValueError(f"{changed[0]} {value}: applies to {applies_to}, so it would be ignored")


def check_fit_options(args) -> None:
    """Option values and combinations, checked before any data are read.

    Options that the chosen fit would silently ignore are refused (as :func:`check_fixed_values` does for
    fixed values of fitted parameters): the user probably meant something else.
    """
    if args.model != "noisy-network":
        _refuse_set(args, ("noise", "frozen", "sigma_per", "noisy_start", "give_up", "noisy_population"),
                    "--model noisy-network only (the deterministic network has no weight noise)")
    if args.criterion != "free-running":
        _refuse_set(args, ("drift", "summary_weight"), "--criterion free-running only")
    repeated = sorted({g for g in args.drift or () if list(args.drift).count(g) > 1})
    if repeated:
        raise ValueError(f"--drift: group {repeated[0]} given twice; give each group once (bias, stim)")
    if not (math.isfinite(args.summary_weight) and args.summary_weight >= 0):
        raise ValueError(f"--summary-weight: must be a finite number >= 0, got {args.summary_weight}")
    for option, value, low, high in (("--restarts", args.restarts, 1, MAX_RESTARTS),
                                     ("--max-iter", args.max_iter, 1, MAX_ITER),
                                     ("--samples", args.samples, 1, 100_000),
                                     ("--population-iter", args.population_iter, 1, 10_000),
                                     ("--workers", args.workers, 1, 10_000)):
        if value < low:
            raise ValueError(f"{option}: must be >= {low}, got {value}")
        if value > high:
            raise ValueError(f"{option}: must be <= {high:,} (more would run for days and gain nothing), got {value}")
    if args.model == "noisy-network":
        if args.sigma_per == "column" and "U" in (args.frozen or ()):
            raise ValueError("--sigma-per column: sets the noise of U's columns, and --frozen U leaves U without "
                             "noise, so it would be ignored")
        return  # run() refuses every option the noisy learner does not take
    if args.population and (not args.map_prior or args.method != "newton" or args.backend != "batched"):
        raise ValueError("--population: needs the default MAP Newton fit in one batch "
                         "(drop --ml, --method lbfgs/adam, --backend local/ray)")
    ignored = []
    if args.backend == "batched":
        ignored += [(f, "applies to --backend local/ray") for f in _changed(args, "workers", "address")]
    elif args.backend == "local":
        ignored += [(f, "applies to --backend ray") for f in _changed(args, "address")]
    if args.method == "newton":
        ignored += [(f, "applies to --method lbfgs/adam (the Newton fit has no torch unroll)")
                    for f in _changed(args, "engine")]
    if args.cv == "none":
        ignored += [(f, "applies to cross-validation (--cv time/interleaved)")
                    for f in _changed(args, "predictive", "samples")]
    elif args.predictive == "plugin":
        ignored += [(f, "applies to --predictive laplace") for f in _changed(args, "samples")]
    if not args.population:
        ignored += [(f, "applies to --population") for f in _changed(args, "population_iter")]
    if ignored:
        flag, why = ignored[0]
        value = getattr(args, args.option_defaults_by_flag[flag])
        raise ValueError(f"{flag} {value}: {why}, so it would be ignored in this fit; drop it "
                         "or add the option it belongs to")


#: Fewest mice a --population fit runs on; below this many (the free parameters + 1) it warns.
MIN_POPULATION_MICE = 2


def check_population_size(trials, n_free: int) -> None:
    """``--population`` needs a cohort: refuse one mouse, warn while the mice do not outnumber the parameters."""
    mice = sorted(trials["mouse"].astype(str).unique())
    if len(mice) < MIN_POPULATION_MICE:
        raise ValueError(f"--population: needs at least {MIN_POPULATION_MICE} mice, got {len(mice)} ({', '.join(mice)}): "
                         "a population mean and covariance cannot be estimated from one mouse (its 'population' "
                         "would be the mouse itself); drop --population for the per-mouse MAP fit, or add mice")
    if len(mice) <= n_free:
        warnings.warn(f"--population with {len(mice)} mice: the population covariance of {n_free} parameters is "
                      f"estimated from {len(mice)} mice, so it is rank-deficient and the population (and the "
                      f"shrinkage of every mouse towards it) is mostly noise; use at least {n_free + 1} mice "
                      "(ideally many more), or drop --population for independent per-mouse fits",
                      UserWarning, stacklevel=2)


def warn_not_converged(table) -> None:
    """A stderr line naming every mouse whose fit did not converge (with its stop reason)."""
    bad = table.loc[~table["converged"].astype(bool)]
    if len(bad):
        reasons = bad["stop_reason"] if "stop_reason" in bad else [""] * len(bad)
        named = ", ".join(f"{m} ({r})" if r else str(m) for m, r in zip(bad["mouse"], reasons))
        print(f"warning: {len(bad)} of {len(table)} mice did not converge: {named}; try more --max-iter or "
              "--restarts (`mouse-rl check` on such a fit checks an unconverged optimum)", file=sys.stderr)


def run_freerun(args, trials) -> int:
    """``--criterion free-running``: :func:`mouse_rl.fit.freerun.fit_free_running`."""
    from ..fit.batch import prepare_trials
    from ..fit.freerun import fit_free_running
    from ..outputs import OutputSet
    from .options import model_params

    res = fit_free_running(trials, fixed=model_params(args), seed=args.seed, progress=not args.quiet,
                           drift=tuple(args.drift or ()), summary_weight=args.summary_weight)
    with OutputSet(args.out, meta={"command": "fit"}) as outputs:
        res.params.to_csv(outputs.path("freerun_params.csv"), index=False)
        res.history.to_csv(outputs.path("freerun_history.csv"), index=False)
        prepare_trials(trials).to_parquet(outputs.path("fit_trials.parquet"), index=False)
        save_laplace(outputs, res, hessian=res.precision, sigma_day=res.sigma_day_matrix(),
                     criterion="free-running", **{k: v for k, v in res.options.items() if k != "free"})
    cols = ["mouse", *res.transform.free, *(f"sigma_day_{g}" for g in res.sigma_day), "energy_score", "fit_seconds"]
    print(res.params[cols].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(f"wrote {args.out / 'freerun_params.csv'} (check it with `mouse-rl check {args.out}`)")
    return 0


def _noisy_start(args):
    starts = args.noisy_start
    if len(set(starts)) != len(starts):
        raise ValueError(f"--noisy-start: give distinct starts, got {' '.join(starts)}")
    if args.give_up is not None and len(starts) < 2:
        raise ValueError("--give-up: applies to several --noisy-start (e.g. network psytrack), so it would be ignored")
    return starts[0] if len(starts) == 1 else tuple(starts)


def _check_noisy_cohort(args, trials) -> None:
    """--noisy-population needs a cohort (after the data are read, before anything is written)."""
    from ..fit.statespace import MIN_POPULATION_MICE

    n_mice = trials["mouse"].nunique()
    if args.noisy_population and n_mice < MIN_POPULATION_MICE:
        raise ValueError(f"--noisy-population: a population prior needs at least {MIN_POPULATION_MICE} mice, "
                         f"got {n_mice}; drop --noisy-population or add mice")


def _check_noisy_population(args) -> None:
    """--noisy-population names hyperparameters this variant fits (before any data are read)."""
    from ..fit.statespace import check_population, default_free

    check_population(args.noisy_population, default_free(tuple(args.frozen or ()), args.sigma_per),
                     "--noisy-population")


def _give_up(values) -> tuple[int, float]:
    k, nats = values
    if not (k >= 0 and k == int(k)) or not nats >= 0:
        raise ValueError(f"--give-up: K must be an integer >= 0 and NATS >= 0, got {k:g} {nats:g}")
    return int(k), float(nats)


def run_noisy(args, trials) -> int:
    """``--model noisy-network``: the state-space fit of :mod:`mouse_rl.fit.statespace`."""
    from ..fit.statespace import fit_noisy
    from ..fit.statespace_plots import plot_noisy_weights
    from ..outputs import OutputSet
    from ..safe_names import unique_filenames

    fit = fit_noisy(trials, encoding=args.encoding, zero_reward=args.zero_reward,
                    network_kw=dict(n_restarts=args.restarts, seed=args.seed), noise=args.noise,
                    frozen=tuple(args.frozen or ()), sigma_per=args.sigma_per,
                    start=_noisy_start(args), give_up=None if args.give_up is None else _give_up(args.give_up),
                    population=tuple(args.noisy_population))
    with OutputSet(args.out, meta={"command": "fit"}) as outputs:
        fit.params.to_csv(outputs.path("noisy_params.csv"), index=False)
        fit.weights.to_parquet(outputs.path("noisy_weights.parquet"), index=False)
        if args.plots:
            stems = unique_filenames(fit.params["mouse"])
            for mouse in fit.params["mouse"]:
                plot_noisy_weights(fit, mouse).savefig(outputs.path(f"plots/{stems[str(mouse)]}_noisy.png"),
                                                       dpi=100, format="png")
    print(fit.params.drop(columns="status").to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    for name, pop in fit.population.items():
        print(f"population prior of {name}: mean {pop['mean']:.4g}, sd {pop['sd']:.3g} ({pop['transform']} units)"
              + ("" if pop["converged"] else f" (not converged after {pop['iterations']} refits)"))
    print(f"wrote {args.out / 'noisy_params.csv'} (Laplace log evidence {fit.evidence:.1f} nats)")
    bad = fit.params.loc[~fit.params["converged"].astype(bool)]
    for mouse, status in zip(bad["mouse"], bad["status"]):
        print(f"warning: {mouse} not converged: {status}", file=sys.stderr)
    return 0
