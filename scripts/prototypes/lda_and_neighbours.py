"""Raw vectors, LDA at 16 to 96 dimensions and its regularisation, re-rank depth, CSLS hubness correction and
query expansion."""
import os, sys, numpy as np
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import *
F, L, ids = load(os.environ.get("CLIPS", "bal_train.jsonl"))
A, B, LA, LB = halves(F, L)
XA = F[A].mean(1)

def projected(dims, reg, weight='pair'):
    W, mu = fit_lda(XA, LA, dims, reg, weight)
    return (F[B] - mu) @ W

evaluate('none', F[B], LB)
evaluate('none', F[B], LB, rerank=20)
lda = projected(32, 0.3)
for rerank in (0, 10, 20, 30, 50, 100):
    evaluate('lda32 r0.3', lda, LB, rerank=rerank)
for qe in (1, 3, 5):
    evaluate('lda32 r0.3', lda, LB, qe=qe)
# CSLS: each candidate's cosine less `c` x its mean cosine to its own 10 nearest.
V = normed(lda.mean(1)); S = V @ V.T; np.fill_diagonal(S, -9)
r = np.sort(S, 1)[:, -10:].mean(1)
for c in (0.5, 1.0):
    T = S - c * r[None, :]; np.fill_diagonal(T, -9)
    p, n = precision(topk(T, 10), LB, LB); print(f'lda32 r0.3 csls {c}: P@10 {p:.4f}')
evaluate('lda32 r0.3, one sample a clip', projected(32, 0.3, weight='clip'), LB)
for d, reg in ((16, 0.3), (24, 0.3), (48, 0.3), (96, 0.3), (32, 0.03), (32, 0.1), (32, 1.0), (64, 0.1)):
    evaluate(f'lda{d} r{reg}', projected(d, reg), LB)
