import os, sys, numpy as np
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import *
from sklearn.linear_model import LogisticRegression
F, L, ids = load(os.environ.get('CLIPS', 'bal_train.jsonl'))
N = len(F)
A = np.arange(0, N, 2); B = np.arange(1, N, 2)
LA = [L[i] for i in A]; LB = [L[i] for i in B]
sig = lambda z: 1 / (1 + np.exp(-z))
classes = sorted({l for ls in LA for l in ls})
Y = np.array([[c in ls for c in classes] for ls in LA]).astype(int)
XA = F[A].mean(1); m = XA.mean(0); s = XA.std(0)
Wl = []; bl = []
for j in range(Y.shape[1]):
    lr = LogisticRegression(C=0.05, max_iter=500).fit((XA - m) / s, Y[:, j])
    Wl.append(lr.coef_[0] / s); bl.append(lr.intercept_[0] - (lr.coef_[0] / s) @ m)
Wl = np.array(Wl).T; bl = np.array(bl)
pf = sig(F[B] @ Wl + bl); P = pf.mean(1)
def prec(S, name):
    S = S.copy(); np.fill_diagonal(S, -1e9)
    T = topk(S, 10); p, n = precision(T, LB, LB); print(f'{name:30s} {p:.4f}', flush=True)
V = normed(P)
prec(V @ V.T, 'cosine')
prec(P @ P.T, 'dot')
# exact P(share) = 1 - prod(1 - pq px)
S = np.zeros((len(B), len(B)))
for i in range(len(B)):
    S[i] = 1 - np.exp(np.log1p(-P[i] * P).sum(1))
prec(S, 'p(share)')
for a in (0.5, 0.75):
    Q = P / np.linalg.norm(P, axis=1, keepdims=True) ** a
    prec(Q @ Q.T, f'norm^{a}')
