"""The lead not taken: the cosine times the candidate's probability mass, |P|^beta, as the whole ranking or in
the re-rank of the cosine's top K; both halves."""
import os, sys, numpy as np
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import *
F, L, ids = load(os.environ.get("CLIPS", "bal_train.jsonl"))
for flip in (False, True):
    A, B, LA, LB = halves(F, L, flip)
    W, b = fit_logistic(F[A].mean(1), LA, 0.05)
    frames = sigmoid(F[B] @ W + b); P = frames.mean(1)
    norm = np.linalg.norm(P, axis=1)
    V = normed(P); C = V @ V.T; np.fill_diagonal(C, -9)
    Fn = normed(frames)
    def report(T, name):
        p, n = precision(T, LB, LB); print(f'{"even fits" if flip else "odd fits"}: {name:40s} {p:.4f}', flush=True)
    for beta in (0.0, 0.1, 0.2, 0.25, 0.3, 0.4, 0.5):
        report(topk(C * norm[None, :] ** beta, 10), f'cos x |P|^{beta}')
    for K in (20, 50):
        T = topk(C, K)
        for beta in (0.0, 0.25, 0.5):
            report(np.array([c[np.argsort(-(chamfer(Fn[q], Fn[c]) * norm[c] ** beta), kind='stable')]
                             for q, c in enumerate(T)]), f'cos top {K}, then chamfer x |P|^{beta}')
