"""Build ``notebooks/dopamine.ipynb`` (outputs stripped): ``python -m mouse_rl.dopamine._notebook [PATH]``.

Set ``MOUSE_RL_SMALL=1`` when executing it for a CI-sized run (< 1 min).
"""
from __future__ import annotations

import sys
from pathlib import Path

CELLS = [
    ("md", """# Dopamine-like teaching signals of the deep network

Model read-outs (stimulus-onset Q^stim of the chosen action; outcome deltas), synthetic recordings with
known ground truth, the cross-validated regression that identifies which delta each region carries,
and optogenetic stimulation of one teaching signal vs. added reward (MODEL.md section 5).
Set `MOUSE_RL_SMALL=1` for a small, fast run."""),
    ("code", """import os
import matplotlib
matplotlib.use("Agg")
import mouse_rl
from mouse_rl import dopamine as da

SMALL = os.environ.get("MOUSE_RL_SMALL", "0") not in ("", "0")
N_MICE, N_SESSIONS = (6, 12) if SMALL else (30, 25)
params = mouse_rl.ModelParams(b_R=0.05)  # small right bias: one-sided (R-only) stage
sim = da.simulate_opto(None, n_mice=N_MICE, n_sessions=N_SESSIONS, params=params, seed=0, record_weights=True)
sim.trials.shape"""),
    ("md", """## Read-outs
`stim_q_stim` and `stim_q_tot_minus_const` are equal (the network is linear). Association state uses the
per-trial weights (before each update) recorded by `simulate_opto(..., record_weights=True)`."""),
    ("code", """table = da.readout_table(sim.trials, bins=4 if SMALL else 5)
da.summarise_readouts(table, by=("session_bin", "association")).query("signal == 'stim_q_stim'")"""),
    ("code", "da.plot_delta_vs_contrast(table)"),
    ("code", "da.plot_delta_over_sessions(table)"),
    ("md", """## Synthetic recordings and regression
Ground truth: DLS carries delta_stim, DMS delta_const, NAc delta_tot (amplitude SNR 1.5)."""),
    ("code", """syn = da.synthetic_recordings(sim.trials, snr=1.5, seed=1)
report = da.regress_recordings(sim.trials, syn.recordings, n_null=19)
report.summary"""),
    ("code", "report.scores.groupby(['region', 'model'])[['r2_cv', 'p_value']].mean().unstack()"),
    ("code", """merged = da.align_recordings(sim.trials, syn.recordings)
da.contralateral_view(merged).groupby('stimulus_side')['da_DLS_contra'].mean()"""),
    ("md", "## Joint fit (choices + one region's dopamine), one mouse, few iterations"),
    ("code", """first = sim.trials[(sim.trials.mouse == 'sim0000') & (sim.trials.session <= (2 if SMALL else 6))]
rec = syn.recordings.merge(first[['mouse', 'session', 'trial']])
jf = da.joint_fit(first, rec, regions=['da_DLS_left', 'da_NAc'], n_iter=5 if SMALL else 40)
jf.best"""),
    ("md", """## Optogenetics: +kappa on delta_stim on right-stimulus trials vs. the same reward
delta_stim stimulation only changes U[choice, R-stim]; adding reward also changes the cortex and bias."""),
    ("code", """cmp = da.compare_opto(da.OptoProtocol('delta_stim', kappa=0.5, contingency='stimulus', side=1),
                      n_mice=N_MICE, n_sessions=min(N_SESSIONS, 8), seed=0)
cmp.plot()"""),
    ("code", "cmp.summary.groupby(['arm', 'session'], observed=True)[['accuracy', 'a_R', 'U_RR', 'U_Rb']].mean().unstack(0).tail(3)"),
]


def build(path="notebooks/dopamine.ipynb") -> Path:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_markdown_cell(src) if kind == "md" else nbformat.v4.new_code_cell(src)
                for kind, src in CELLS]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


if __name__ == "__main__":
    print(build(*sys.argv[1:]))
