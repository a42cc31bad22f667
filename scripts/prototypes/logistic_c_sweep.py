import os, sys, numpy as np
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import *
from sklearn.linear_model import LogisticRegression
F, L, ids = load(os.environ.get('CLIPS', 'bal_train.jsonl'))
N = len(F)
A = np.arange(0, N, 2); B = np.arange(1, N, 2)
LA = [L[i] for i in A]; LB = [L[i] for i in B]
def evaluate(name, fr, rerank=0):
    V = normed(fr.mean(1))
    S = V @ V.T; np.fill_diagonal(S, -9)
    T = topk(S, max(10, rerank))
    if rerank:
        Fn = normed(fr)
        T = np.array([c[np.argsort(-chamfer(Fn[q], Fn[c]), kind='stable')] for q, c in enumerate(T)])
    p, n = precision(T, LB, LB)
    print(f'{name:50s} rerank {rerank:3d} P@10 {p:.4f}', flush=True)
sig = lambda z: 1 / (1 + np.exp(-z))
def fit(X, LX, C, minsup=1):
    classes = sorted({l for ls in LX for l in ls})
    Y = np.array([[c in ls for c in classes] for ls in LX])
    Y = Y[:, Y.sum(0) >= minsup]
    m = X.mean(0); s = X.std(0)
    Wl = []; bl = []
    for j in range(Y.shape[1]):
        lr = LogisticRegression(C=C, max_iter=500).fit((X - m) / s, Y[:, j])
        Wl.append(lr.coef_[0] / s); bl.append(lr.intercept_[0] - (lr.coef_[0] / s) @ m)
    return np.array(Wl).T, np.array(bl)
XA = F[A].mean(1)
for C in (0.01, 0.02, 0.05):
    Wl, bl = fit(XA, LA, C)
    pf = sig(F[B] @ Wl + bl)
    evaluate(f'means C{C}', pf); evaluate(f'means C{C}', pf, 20); evaluate(f'means C{C}', pf, 50)
Wl, bl = fit(XA, LA, 0.03, minsup=5); print('classes', Wl.shape[1])
pf = sig(F[B] @ Wl + bl); evaluate('means C0.03 minsup5', pf); evaluate('means C0.03 minsup5', pf, 20)
Wl, bl = fit(F[A].reshape(-1, 128), [l for l in LA for _ in range(10)], 0.003)
pf = sig(F[B] @ Wl + bl); evaluate('frames C0.003', pf); evaluate('frames C0.003', pf, 20)
