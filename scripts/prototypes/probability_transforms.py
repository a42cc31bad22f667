import os, sys, numpy as np
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import *
from sklearn.linear_model import LogisticRegression
F, L, ids = load(os.environ.get('CLIPS', 'bal_train.jsonl'))
N = len(F)
A = np.arange(0, N, 2); B = np.arange(1, N, 2)
LA = [L[i] for i in A]; LB = [L[i] for i in B]
def evaluate(name, fr, rerank=0, qe=0):
    V = normed(fr.mean(1))
    S = V @ V.T; np.fill_diagonal(S, -9)
    if qe:
        t = topk(S, qe); Q = normed(V + V[t].sum(1) * 0.5)
        S = Q @ V.T; np.fill_diagonal(S, -9)
    T = topk(S, max(10, rerank))
    if rerank:
        Fn = normed(fr)
        T = np.array([c[np.argsort(-chamfer(Fn[q], Fn[c]), kind='stable')] for q, c in enumerate(T)])
    p, n = precision(T, LB, LB)
    print(f'{name:50s} rerank {rerank:3d} qe {qe} P@10 {p:.4f}', flush=True)
sig = lambda z: 1 / (1 + np.exp(-z))
classes = sorted({l for ls in LA for l in ls})
Y = np.array([[c in ls for c in classes] for ls in LA]).astype(int)
XA = F[A].mean(1); m = XA.mean(0); s = XA.std(0)
Wl = []; bl = []
for j in range(Y.shape[1]):
    lr = LogisticRegression(C=0.05, max_iter=500).fit((XA - m) / s, Y[:, j])
    Wl.append(lr.coef_[0] / s); bl.append(lr.intercept_[0] - (lr.coef_[0] / s) @ m)
Wl = np.array(Wl).T; bl = np.array(bl)
pf = sig(F[B] @ Wl + bl)
evaluate('base', pf); evaluate('base', pf, 20)
for a in (0.5, 0.75, 1.5):
    evaluate(f'p^{a}', pf ** a); evaluate(f'p^{a}', pf ** a, 20)
prior = Y.mean(0)
for b in (-0.5, -0.25, 0.25):
    evaluate(f'prior^{b}', pf * prior ** b); evaluate(f'prior^{b}', pf * prior ** b, 20)
for q in (3, 5, 10):
    evaluate('qe', pf, 20, qe=q)
