import os, sys, numpy as np
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import *
from sklearn.linear_model import LogisticRegression
F, L, ids = load(os.environ.get('CLIPS', 'bal_train.jsonl'))
N = len(F)
A = np.arange(0, N, 2); B = np.arange(1, N, 2)
LA = [L[i] for i in A]; LB = [L[i] for i in B]

def evaluate(name, fr, rerank=0, lam=0.0, qe=0):
    V = normed(fr.mean(1))
    S = V @ V.T; np.fill_diagonal(S, -9)
    if qe:
        t = topk(S, qe); Q = normed(V + V[t].sum(1) * 0.5)
        S = Q @ V.T; np.fill_diagonal(S, -9)
    T = topk(S, max(10, rerank))
    if rerank:
        Fn = normed(fr)
        T = np.array([c[np.argsort(-(chamfer(Fn[q], Fn[c]) + lam * S[q, c]), kind='stable')] for q, c in enumerate(T)])
    p, n = precision(T, LB, LB)
    print(f'{name:40s} rerank {rerank:3d} lam {lam} qe {qe} P@10 {p:.4f}', flush=True)

XA = F[A].mean(1)
W, mu = fit_lda(XA, LA, 32, 0.3)
evaluate('lda32', (F[B] - mu) @ W)
for lam in (0.5, 1.0, 2.0):
    evaluate('lda32', (F[B] - mu) @ W, rerank=50, lam=lam)
evaluate('lda32 qe5', (F[B] - mu) @ W, rerank=20, qe=5)
# frame-level LDA
FA = F[A].reshape(-1, 128); LFA = [l for l in LA for _ in range(10)]
for d, r in ((32, 0.3), (32, 0.1), (48, 0.1), (64, 0.1)):
    Wf, muf = fit_lda(FA, LFA, d, r)
    evaluate(f'frame-lda{d} r{r}', (F[B] - muf) @ Wf)
    evaluate(f'frame-lda{d} r{r}', (F[B] - muf) @ Wf, rerank=20)
# logistic regression logits
classes = sorted({l for ls in LA for l in ls})
Y = np.array([[c in ls for c in classes] for ls in LA])
keep = Y.sum(0) >= 3
Y = Y[:, keep]; print('classes', Y.shape[1])
m = XA.mean(0); s = XA.std(0)
for C in (0.01, 0.1, 1.0):
    Wl = []; bl = []
    for j in range(Y.shape[1]):
        lr = LogisticRegression(C=C, max_iter=300).fit((XA - m) / s, Y[:, j])
        Wl.append(lr.coef_[0] / s); bl.append(lr.intercept_[0] - (lr.coef_[0] / s) @ m)
    Wl = np.array(Wl).T; bl = np.array(bl)
    fr = F[B] @ Wl + bl
    evaluate(f'logreg C{C} logits', fr)
    evaluate(f'logreg C{C} logits', fr, rerank=20)
    evaluate(f'logreg C{C} logits-centred', F[B] @ Wl - (XA @ Wl).mean(0))
    evaluate(f'logreg C{C} probs', 1 / (1 + np.exp(-fr)))
