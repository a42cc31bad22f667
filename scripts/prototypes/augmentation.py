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
classes = sorted({l for ls in LA for l in ls})
def fit(X, LX, C):
    Y = np.array([[c in ls for c in classes] for ls in LX]).astype(int)
    m = X.mean(0); s = X.std(0)
    Wl = []; bl = []
    for j in range(Y.shape[1]):
        lr = LogisticRegression(C=C, max_iter=500).fit((X - m) / s, Y[:, j])
        Wl.append(lr.coef_[0] / s); bl.append(lr.intercept_[0] - (lr.coef_[0] / s) @ m)
    return np.array(Wl).T, np.array(bl)
FA = F[A]
X = np.concatenate([FA.mean(1), FA[:, :5].mean(1), FA[:, 5:].mean(1)])
LX = LA * 3
for C in (0.05, 0.017):
    W, b = fit(X, LX, C)
    pf = sig(F[B] @ W + b)
    evaluate(f'aug halves C{C}', pf); evaluate(f'aug halves C{C}', pf, 20)
