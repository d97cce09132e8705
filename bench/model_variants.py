"""Experiments on the model itself: the default fit and its checks under variants of the learning rule.

Issue 10's diagnosis (README, "Why: the mice's bias emerges and reverses"): the fitted copies keep their
bias where the mice reverse theirs. Fitted to the real mice, the constant channel's gain ``a_b`` (trained by
delta_tot like every cortical gain, MODEL.md section 3) collapses early for most mice; the bias weights
``U[., bias]`` then learn at rate ``eta * a_b^2``, too slowly to follow the reward rates whose balance
reverses the bias in the model's one-sided stage. Each variant here is a patch of the learning rule in all
three places that define or accelerate it (:func:`mouse_rl.network.trial_update`, the fit kernel and the
fused simulation step); the patches are experiments, not options of the library (MODEL.md's rule stays the
only one it ships):

* ``bias_by_delta_tot``: ``U[ch, bias]`` learns from delta_tot instead of delta_const (the constant channel
  learns what the stimulus channels leave unexplained);
* ``frozen_bias_gain``: ``a_b`` is not learned (stays at ``k`` = 1), so the bias weights keep learning at
  rate ``eta``;
* ``frozen_bias_gain_fit_k``: as ``frozen_bias_gain``, with ``k`` fitted per mouse (added to the default free
  set): the bias weights learn at their own fitted rate ``eta k^2``.

For the unpatched tree (``baseline``) and each patch (``bench/model_variants/NAME.patch``) the script copies
the source tree to a temporary folder, applies the patch (``git apply``), and runs there, as subprocesses,
``bench/fit_real_mice.py --trust --seeds 0`` (default fit, its posterior-predictive check and the
teacher-forced cohort relations) and ``bench/fit_real_mice.py --models network`` (held-out bits/trial, both
schemes) and ``bench/late_psychometric.py`` (where the teacher-forced fit misses the mice's late behaviour:
P(Right) by stimulus, labels of drawn choices), with their outputs in ``OUT/NAME``; ``--benches`` runs a
subset, keeping the other benches' earlier outputs and numbers. ``--verify`` first runs the kernel tests on the patched tree
(fit-kernel derivatives against autograd through the patched ``trial_update``, the fused simulation against
the reference rollout): a patch that changed one definition and not the others fails there. Each tree compiles its own numba kernels (a few minutes).
Prints one table; writes ``OUT/model_variants.json`` (rows of variants not rerun are kept).

    python bench/model_variants.py --out bench/results/model_variants
    python bench/model_variants.py --variants bias_by_delta_tot --benches late --out bench/results/model_variants
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
PATCHES = ROOT / "bench" / "model_variants"


def copy_tree(dest: Path, tests: bool = False) -> None:
    """The package, the environments and the benches (without results or caches) into ``dest``; the tests and
    the project file too with ``tests``."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "results")
    for part in ("mouse_rl", "envs", "bench", *(("tests",) if tests else ())):
        shutil.copytree(ROOT / part, dest / part, ignore=ignore)
    if tests:
        shutil.copy(ROOT / "pyproject.toml", dest / "pyproject.toml")


def run(cmd: list[str], src: Path, log: Path, threads: int) -> None:
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": str(threads),
           "NUMBA_NUM_THREADS": str(threads)}
    with log.open("w") as f:
        done = subprocess.run(cmd, cwd=src, env=env, stdout=f, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed in {src} (exit {done.returncode}); see {log}")


BENCHES = ("trust", "cv", "late")


def run_variant(name: str, src: Path, work: Path, data: str, threads: int, verify: bool,
                benches=BENCHES) -> dict:
    """Copy, patch (unless ``baseline``), optionally verify, run ``benches``; their entries of the table's row."""
    copy_tree(src, tests=verify)
    if name != "baseline":
        patch = str(PATCHES / f"{name}.patch")
        done = subprocess.run(["git", "apply", patch], cwd=src, capture_output=True, text=True)
        applied = subprocess.run(["git", "apply", "--check", "--reverse", patch], cwd=src, capture_output=True)
        if done.returncode != 0 or applied.returncode != 0:
            raise SystemExit(f"{name}.patch does not apply to this tree: {done.stderr.strip()}")
    if verify:  # the patched rule is one rule: kernels against autograd and the reference rollout
        # (the saturation test is left out: that eta = 1 drives the weights to their bound is a property of
        # MODEL.md's rule, not a check that the definitions agree)
        run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_kernel.py",
             "tests/test_sim_kernel.py", "-k", "not saturates"], src, work / "verify.log", threads)
    bench = ["bench/fit_real_mice.py", "--data", data, "--threads", str(threads)]
    row = {"verified": verify} if verify or "trust" in benches else {}  # a late-only rerun keeps the earlier flag
    for b in benches:
        _clear(work, b)
    if "trust" in benches:
        run([sys.executable, *bench, "--trust", "--seeds", "0", "--out", str(work / "trust")], src,
            work / "trust.log", threads)
        trust = json.loads((work / "trust" / "trust_summary.json").read_text())
        row.update({k: trust[k] for k in (
            "log_posterior_total", "learner_side_agreement", "teacher_forced_r_early_bias_late_slope_diff",
            "teacher_forced_r_early_bias_late_bias", "constant_channel_frozen", "check_session_coverage",
            "check_late_slope_inside", "check_side_match", "check_expected_side_match",
            "check_r_early_bias_late_slope_diff", "check_r_early_bias_late_slope_diff_median",
            "check_r_early_bias_late_bias", "check_r_early_bias_late_bias_median",
            "check_r_early_bias_late_bias_lo", "check_r_early_bias_late_bias_hi")})
    if "cv" in benches:
        run([sys.executable, *bench, "--models", "network", "--out", str(work / "cv")], src, work / "cv.log", threads)
        cv = pd.read_csv(work / "cv" / "summary.csv").set_index("scheme")
        row["heldout_bits_time"] = float(cv.loc["time", "bits_per_trial_total"])
        row["heldout_bits_interleaved"] = float(cv.loc["interleaved", "bits_per_trial_total"])
    if "late" in benches:
        run([sys.executable, "bench/late_psychometric.py", "--data", data, "--threads", str(threads), "--out",
             str(work / "late")], src, work / "late.log", threads)
        late = json.loads((work / "late" / "summary.json").read_text())
        row.update({f"late_error_{k}": v for k, v in late["mean_abs_error"].items()})
        row["late_zero_contrast_away_from_side"] = late["zero_contrast_opposite_to_side"]["model"]
        row["late_abs_slope_diff"] = late["mean_abs_late_slope_diff"]["model"]
        row["late_slope_diff_inside_drawn_band"] = late["late_slope_diff_inside_drawn_band"]
    return row


def _clear(work: Path, bench: str) -> None:
    """Remove a bench's earlier outputs in ``work`` (its folder and log)."""
    shutil.rmtree(work / bench, ignore_errors=True)
    (work / f"{bench}.log").unlink(missing_ok=True)


def main(argv=None) -> int:
    names = sorted(p.stem for p in PATCHES.glob("*.patch"))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", nargs="+", default=["baseline", *names], choices=["baseline", *names])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "liebana2025")
    ap.add_argument("--threads", type=int, default=2, help="numba threads of every run (default 2)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "model_variants")
    ap.add_argument("--benches", nargs="+", default=list(BENCHES), choices=BENCHES,
                    help="benches to run on each tree (default all); the others' earlier outputs and numbers are kept")
    ap.add_argument("--verify", action="store_true",
                    help="first run tests/test_kernel.py and tests/test_sim_kernel.py on the patched tree")
    args = ap.parse_args(argv)
    if not args.data.exists():
        ap.error(f"--data: {str(args.data)!r} does not exist (the Liebana et al. 2025 folder)")
    if args.threads < 1:
        ap.error(f"--threads must be >= 1, got {args.threads}")
    from mouse_rl.cli.guards import check_out

    try:  # the CLI's --out check: not a file, not below a file, writable
        check_out(args.out, "folder")
    except ValueError as e:
        ap.error(str(e))
    data = str(args.data.resolve())
    table = args.out / "model_variants.json"
    try:  # variants run before keep their rows
        rows = json.loads(table.read_text()) if table.exists() else {}
    except (OSError, ValueError) as e:
        ap.error(f"--out: cannot read the earlier results {str(table)!r} ({e}); move it or choose another --out")
    for name in args.variants:
        work = (args.out / name).resolve()
        work.mkdir(parents=True, exist_ok=True)
        # outside any git repository: inside one, `git apply` silently skips paths outside the current folder
        tmp = Path(tempfile.mkdtemp(prefix=f"mouse_rl_{name}_"))
        try:
            rows[name] = {**rows.get(name, {}), **run_variant(name, tmp / "src", work, data, args.threads,
                                                              args.verify, tuple(args.benches))}
        finally:
            shutil.rmtree(tmp)
        table.write_text(json.dumps(rows, indent=1))  # after each variant
    print(pd.DataFrame(rows).to_string(float_format=lambda v: f"{v:.4g}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
