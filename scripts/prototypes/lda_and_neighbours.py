import os, sys, numpy as np
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import *
F, L, ids = load(os.environ.get('CLIPS', 'bal_train.jsonl'))
N = len(F)
A = np.arange(0, N, 2); B = np.arange(1, N, 2)
LA = [L[i] for i in A]; LB = [L[i] for i in B]
print('clips', N, 'A', len(A), 'B', len(B))

def run(name, proj, rerank=0, csls=0.0, qe=0, feat='mean'):
    FB = F[B]
    if proj is None:
        fr = FB; 
    else:
        W, mu = proj
        fr = (FB - mu[None, None, :F.shape[2]]) @ W if W.shape[0] == 128 else None
    V = normed(fr.mean(1)) if feat == 'mean' else None
    S = V @ V.T
    np.fill_diagonal(S, -9)
    if csls:
        r = np.sort(S, 1)[:, -10:].mean(1)
        S = S - csls * r[None, :]
        np.fill_diagonal(S, -9)
    if qe:
        t = topk(S, qe)
        Q = normed(V + V[t].sum(1) * 0.5)
        S = Q @ V.T; np.fill_diagonal(S, -9)
    k = max(10, rerank)
    T = topk(S, k)
    if rerank:
        Fn = normed(fr)
        T2 = []
        for q in range(len(B)):
            c = T[q]
            sc = chamfer(Fn[q], Fn[c])
            T2.append(c[np.argsort(-sc, kind='stable')])
        T = np.array(T2)
    p, n = precision(T, LB, LB)
    print(f'{name:40s} rerank {rerank:3d} csls {csls} qe {qe}  P@10 {p:.4f}  n {n}', flush=True)
    return p

XA = F[A].mean(1)
run('none', None)
run('none', None, rerank=20)
P = fit_lda(XA, LA, 32, 0.3)
run('lda32 r0.3', P)
run('lda32 r0.3', P, rerank=20)
run('lda32 r0.3', P, rerank=100)
for c in (0.5, 1.0):
    run('lda32 r0.3', P, csls=c)
for q in (1, 3, 5):
    run('lda32 r0.3', P, qe=q)
Pc = fit_lda(XA, LA, 32, 0.3, weight='clip')
run('lda32 r0.3 clipweight', Pc)
for d, r in ((16, 0.3), (24, 0.3), (48, 0.3), (32, 1.0), (64, 0.1)):
    run(f'lda{d} r{r}', fit_lda(XA, LA, d, r))
