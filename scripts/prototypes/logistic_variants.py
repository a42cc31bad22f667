import os, sys, numpy as np
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import *
from sklearn.linear_model import LogisticRegression
F, L, ids = load(os.environ.get('CLIPS', 'bal_train.jsonl'))
N = len(F)
A = np.arange(0, N, 2); B = np.arange(1, N, 2)
LA = [L[i] for i in A]; LB = [L[i] for i in B]

def evaluate(name, fr, rerank=0, vec=None, frr=None):
    V = normed(fr.mean(1) if vec is None else vec)
    S = V @ V.T; np.fill_diagonal(S, -9)
    T = topk(S, max(10, rerank))
    if rerank:
        Fn = normed(fr if frr is None else frr)
        T = np.array([c[np.argsort(-chamfer(Fn[q], Fn[c]), kind='stable')] for q, c in enumerate(T)])
    p, n = precision(T, LB, LB)
    print(f'{name:50s} rerank {rerank:3d} P@10 {p:.4f}', flush=True)

XA = F[A].mean(1)
W, mu = fit_lda(XA, LA, 32, 0.3)
ldafr = (F[B] - mu) @ W
classes = sorted({l for ls in LA for l in ls})
Y = np.array([[c in ls for c in classes] for ls in LA])
m = XA.mean(0); s = XA.std(0)
sig = lambda z: 1 / (1 + np.exp(-z))
for C in (0.03, 0.1, 0.3):
    Wl = []; bl = []
    for j in range(Y.shape[1]):
        lr = LogisticRegression(C=C, max_iter=300).fit((XA - m) / s, Y[:, j])
        Wl.append(lr.coef_[0] / s); bl.append(lr.intercept_[0] - (lr.coef_[0] / s) @ m)
    Wl = np.array(Wl).T; bl = np.array(bl)
    pm = sig(F[B].mean(1) @ Wl + bl)
    pf = sig(F[B] @ Wl + bl)
    evaluate(f'C{C} probs of mean', None, vec=pm)
    evaluate(f'C{C} sqrt probs of mean', None, vec=np.sqrt(pm))
    evaluate(f'C{C} mean of frame probs', pf)
    evaluate(f'C{C} mean of frame probs', pf, rerank=20)
    evaluate(f'C{C} probs of mean, rerank lda frames', None, rerank=20, vec=pm, frr=ldafr)
    # PCA of probs fit on A
    pA = sig(F[A] @ Wl + bl).reshape(-1, Y.shape[1])
    mp = pA.mean(0); U, S_, Vt = np.linalg.svd(pA - mp, full_matrices=False)
    for d in (32, 64):
        P = Vt[:d].T
        evaluate(f'C{C} frame probs pca{d}', (pf - mp) @ P)
        evaluate(f'C{C} frame probs pca{d}', (pf - mp) @ P, rerank=20)
