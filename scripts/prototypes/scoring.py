"""Scores other than the cosine of the mean probabilities: the dot product, the probability of sharing a
label, and a partial normalisation (|P|^a)."""
import os, sys, numpy as np
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import *
F, L, ids = load(os.environ.get("CLIPS", "bal_train.jsonl"))
A, B, LA, LB = halves(F, L)
XA = F[A].mean(1)
W, b = fit_logistic(XA, LA, 0.05)
P = sigmoid(F[B] @ W + b).mean(1)
def report(S, name):
    S = S.copy(); np.fill_diagonal(S, -1e9)
    p, n = precision(topk(S, 10), LB, LB); print(f'{name:30s} {p:.4f}', flush=True)
report(normed(P) @ normed(P).T, 'cosine')
report(P @ P.T, 'dot')
report(np.array([1 - np.exp(np.log1p(-P[i] * P).sum(1)) for i in range(len(P))]), 'p(share a label)')
for a in (0.5, 0.75):
    Q = P / np.linalg.norm(P, axis=1, keepdims=True) ** a
    report(Q @ Q.T, f'P / |P|^{a}')
