import os, sys, numpy as np
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import *
from sklearn.linear_model import LogisticRegression
F, L, ids = load(os.environ.get('CLIPS', 'bal_train.jsonl'))
N = len(F)
sig = lambda z: 1 / (1 + np.exp(-z))
def model(A):
    LA = [L[i] for i in A]
    classes = sorted({l for ls in LA for l in ls})
    Y = np.array([[c in ls for c in classes] for ls in LA]).astype(int)
    XA = F[A].mean(1); m = XA.mean(0); s = XA.std(0)
    Wl = []; bl = []
    for j in range(Y.shape[1]):
        lr = LogisticRegression(C=0.05, max_iter=500).fit((XA - m) / s, Y[:, j])
        Wl.append(lr.coef_[0] / s); bl.append(lr.intercept_[0] - (lr.coef_[0] / s) @ m)
    return np.array(Wl).T, np.array(bl)
for A, B in ((np.arange(0, N, 2), np.arange(1, N, 2)), (np.arange(1, N, 2), np.arange(0, N, 2))):
    LB = [L[i] for i in B]
    W, b = model(A)
    pf = sig(F[B] @ W + b); P = pf.mean(1)
    norm = np.linalg.norm(P, axis=1)
    V = normed(P); C = V @ V.T; np.fill_diagonal(C, -9)
    Fn = normed(pf)
    def prec(T, name):
        p, n = precision(T, LB, LB); print(f'{name:40s} {p:.4f}', flush=True)
    for beta in (0.0, 0.1, 0.2, 0.25, 0.3, 0.4, 0.5):
        S = C * norm[None, :] ** beta
        prec(topk(S, 10), f'cos*norm^{beta}')
    # rerank variants: first stage cosine top K, then chamfer * norm^beta
    for K in (20, 50):
        T = topk(C, K)
        for beta in (0.0, 0.25, 0.5):
            T2 = np.array([c[np.argsort(-(chamfer(Fn[q], Fn[c]) * norm[c] ** beta), kind='stable')] for q, c in enumerate(T)])
            prec(T2, f'cos top{K} -> chamfer*norm^{beta}')
