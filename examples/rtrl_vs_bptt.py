"""Real-time recurrent learning (RTRL) vs backpropagation through time (BPTT): the same gradient,
computed forward in time instead of backward, and what each costs as T and H grow.

    python examples/rtrl_vs_bptt.py [--steps 10 100 1000] [--hidden 4 8 16 32] [--batch 4]

The loss is a vanilla tanh RNN's summed cross-entropy L = sum_t L_t, h_t = tanh(x_t U^T + h_{t-1} W^T + b).

BPTT (the engine's backward) runs the network forward, keeps every h_t, then carries
delta_t = dL/d(pre_t) back in time. Memory grows with T; time is O(T H^2) per sequence.

RTRL carries the sensitivities P_t = dh_t/dtheta (theta = U, W, b: P = H I + H^2 + H numbers) forward
alongside h_t and adds dL_t/dh_t P_t to the gradient at every step:

    P_t = diag(1 - h_t^2) (W P_{t-1} + d pre_t/d theta)   (d pre_t/dU_jk = [i = j] x_t,k; ... )

Nothing about the past is kept, so memory does not grow with T, but P_t has H x P = O(H^3) numbers
and each step costs O(H^4): fine for H = 8, hopeless for H = 512. That is why BPTT won.

Two RTRL routes are shown: the sensitivity matrices above (plain NumPy, all P directions at once),
and the engine's own forward mode, micrornn.jvp, one tangent direction per parameter (P passes,
each streaming through the sequence under no_grad, so also O(1) memory in T); the second is only
run while P x T is small (it is P full passes of the engine). Every route must agree with BPTT to round-off (the script exits 1 otherwise).
"""
import argparse
import sys
import time
import tracemalloc

import numpy as np

import micrornn as mr
from micrornn.nn import SequenceModel

CLASSES = 5
JVP_LIMIT = 12_000  # params x T up to which the one-direction-per-pass forward mode is run (it is slow)


def problem(T, H, B, seed=0):
    """A one-layer tanh SequenceModel and random one-hot inputs and targets."""
    rng = np.random.default_rng(seed)
    model = SequenceModel(CLASSES, H, CLASSES, rng=seed)
    x = np.eye(CLASSES)[rng.integers(0, CLASSES, (T, B))]
    return model, x, rng.integers(0, CLASSES, (T, B))


def bptt_grads(model, x, y):
    """dL/d(U, W, b) by the engine's backward (BPTT through the unrolled graph)."""
    cell = model.rnn.cells[0]
    return [g.data for g in mr.grad(model.loss(x, y)[0], [cell.U, cell.W, cell.b])]


def rtrl_grads(model, x, y):
    """dL/d(U, W, b) forward in time with sensitivity matrices P_t = dh_t/dtheta, (B, H, P)."""
    cell, head = model.rnn.cells[0], model.head
    U, W, b, V, c = cell.U.data, cell.W.data, cell.b.data, head.weight.data, head.bias.data
    T, B, I = x.shape
    H = W.shape[0]
    n_u, n_w = H * I, H * H
    h, P = np.zeros((B, H)), np.zeros((B, H, n_u + n_w + H))
    grad = np.zeros(n_u + n_w + H)
    rows = np.arange(H)
    for t in range(T):
        direct = np.zeros_like(P)  # d pre_t / d theta with h_{t-1} held fixed
        direct[:, rows, rows * I + np.arange(I)[:, None]] = x[t][:, :, None]  # d pre_j/dU_jk = x_k
        direct[:, rows, n_u + rows * H + np.arange(H)[:, None]] = h[:, :, None]  # d pre_j/dW_jk = h_k
        direct[:, rows, n_u + n_w + rows] = 1.0  # d pre_j/db_j = 1
        h = np.tanh(x[t] @ U.T + h @ W.T + b)
        P = (1 - h * h)[:, :, None] * (np.einsum("jk,bkp->bjp", W, P) + direct)
        logits = h @ V.T + c
        probs = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs /= probs.sum(axis=1, keepdims=True)
        probs[np.arange(B), y[t]] -= 1  # dL_t/dlogits = softmax - onehot
        grad += np.einsum("bj,bjp->p", probs @ V, P)  # dL_t/dh_t P_t
    return [grad[:n_u].reshape(H, I), grad[n_u:n_u + n_w].reshape(H, H), grad[n_u + n_w:]]


def streamed_loss(model, x, y):
    """The same loss, one step at a time, so that nothing of step t outlives step t + 1."""
    cell, head, h, loss = model.rnn.cells[0], model.head, None, 0.0
    h = mr.Tensor(np.zeros((x.shape[1], cell.hidden_size)))
    for t in range(x.shape[0]):
        h = cell(x[t], h)
        loss = loss + mr.functional.cross_entropy(head(h), y[t], reduction="sum")
    return loss


def jvp_grads(model, x, y):
    """dL/d(U, W, b) by the engine's forward mode: one jvp along each parameter's unit direction."""
    cell = model.rnn.cells[0]
    params = [cell.U, cell.W, cell.b]
    grads = [np.zeros(p.shape) for p in params]
    with mr.no_grad():  # forward mode keeps no graph: memory does not grow with T
        for k, p in enumerate(params):
            for index in np.ndindex(p.shape):
                tangents = [np.zeros(q.shape) for q in params]
                tangents[k][index] = 1.0
                grads[k][index] = mr.jvp(lambda *_: streamed_loss(model, x, y), params, tangents)[1].item()
    return grads


def measure(route, model, x, y, repeats=3):
    """(gradients, best seconds of a few runs, peak MB allocated during one more run under tracemalloc)."""
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        grads = route(model, x, y)
        seconds.append(time.perf_counter() - start)
    tracemalloc.start()
    route(model, x, y)
    peak = tracemalloc.get_traced_memory()[1] / 1e6
    tracemalloc.stop()
    return grads, min(seconds), peak


def relative_gap(a, b) -> float:
    """max |a - b| / max |b| over all parameters."""
    return max(float(np.max(np.abs(p - q))) for p, q in zip(a, b)) / max(float(np.max(np.abs(q))) for q in b)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))  # first paragraph
    ap.add_argument("--steps", type=int, nargs="+", default=[10, 100, 1000], help="sequence lengths T (at H=8)")
    ap.add_argument("--hidden", type=int, nargs="+", default=[4, 8, 16, 32], help="hidden sizes H (at T=50)")
    ap.add_argument("--batch", type=int, default=4)
    args = ap.parse_args(argv)
    grid = [(T, 8) for T in args.steps] + [(50, H) for H in args.hidden if (50, H) not in [(T, 8) for T in args.steps]]
    print(f"{'T':>5} {'H':>3} {'params':>6} | {'BPTT ms':>8} {'MB':>6} | {'RTRL ms':>8} {'MB':>6} {'gap':>8} | "
          f"{'jvp ms':>8} {'MB':>6} {'gap':>8}")
    worst = 0.0
    for T, H in grid:
        model, x, y = problem(T, H, args.batch)
        reference, t_bptt, m_bptt = measure(bptt_grads, model, x, y)
        rtrl, t_rtrl, m_rtrl = measure(rtrl_grads, model, x, y)
        gap = relative_gap(rtrl, reference)
        n_params = sum(g.size for g in reference)
        line = (f"{T:5d} {H:3d} {n_params:6d} | {t_bptt * 1e3:8.1f} {m_bptt:6.2f} | {t_rtrl * 1e3:8.1f} {m_rtrl:6.2f} "
                f"{gap:8.1e} | ")
        if n_params * T <= JVP_LIMIT:
            forward, t_jvp, m_jvp = measure(jvp_grads, model, x, y, repeats=1)
            jvp_gap = relative_gap(forward, reference)
            gap = max(gap, jvp_gap)
            line += f"{t_jvp * 1e3:8.1f} {m_jvp:6.2f} {jvp_gap:8.1e}"
        else:
            line += f"{'-':>8} {'-':>6} {'-':>8}"
        worst = max(worst, gap)
        print(line, flush=True)
    print(f"worst relative gap to BPTT: {worst:.1e} ({'PASS' if worst < 1e-10 else 'FAIL'}: round-off is < 1e-10)")
    return 0 if worst < 1e-10 else 1


if __name__ == "__main__":
    sys.exit(main())
