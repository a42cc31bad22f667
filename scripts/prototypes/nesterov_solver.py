"""The solver src/index/fit.rs uses (Nesterov's accelerated gradient, fixed steps), on standardised or whitened
inputs, by step count."""
import os, sys, numpy as np, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import *
F, L, ids = load(os.environ.get('CLIPS', 'bal_train.jsonl'))
A, B, LA, LB = halves(F, L)
sig = sigmoid
def fit(X, LX, C, iters, whiten, minsup=5):
    classes = sorted({l for ls in LX for l in ls})
    Y = np.array([[c in ls for c in classes] for ls in LX], dtype=np.float64)
    Y = Y[:, Y.sum(0) >= minsup]
    n = len(X); lam = 1.0 / (C * n)
    m = X.mean(0); Xc = X - m
    if whiten:
        e, V = np.linalg.eigh(Xc.T @ Xc / n); T = V / np.sqrt(e + 1e-9 * e.max())
    else:
        T = np.diag(1 / Xc.std(0))
    Z = Xc @ T
    Lip = 0.25 * np.linalg.eigvalsh(Z.T @ Z / n).max() + lam
    mu = lam; q = (np.sqrt(Lip / mu) - 1) / (np.sqrt(Lip / mu) + 1)
    k = Y.shape[1]; W = np.zeros((128, k)); b = np.log(Y.mean(0) / (1 - Y.mean(0)))
    Wp, bp = W.copy(), b.copy()
    for t in range(iters):
        Wy = W + q * (W - Wp); by = b + q * (b - bp)
        R = sig(Z @ Wy + by) - Y
        gW = Z.T @ R / n + lam * Wy; gb = R.mean(0)
        Wp, bp = W, b
        W = Wy - gW / Lip; b = by - gb / Lip
    loss = -(Y * np.log(sig(Z @ W + b) + 1e-12) + (1 - Y) * np.log(1 - sig(Z @ W + b) + 1e-12)).sum(0).mean() / n + lam / 2 * (W ** 2).sum(0).mean()
    Wx = T @ W; bx = b - m @ Wx
    return Wx, bx, loss, np.abs(gW).max()
XA = F[A].mean(1)
for whiten in (False, True):
    for iters in (50, 100, 200, 400):
        t = time.time()
        Wl, bl, loss, g = fit(XA, LA, 0.05, iters, whiten)
        pf = sig(F[B] @ Wl + bl)
        print('whiten', whiten, 'iters', iters, 'loss %.6f grad %.2e  %.1fs' % (loss, g, time.time() - t))
        evaluate('', pf, LB); evaluate('', pf, LB, rerank=20)
