"""The logistic model's regularisation C, re-rank depth, and a fit on frames rather than clip means."""
import os, sys, numpy as np
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import *
F, L, ids = load(os.environ.get("CLIPS", "bal_train.jsonl"))
A, B, LA, LB = halves(F, L)
XA = F[A].mean(1)
for C in (0.01, 0.02, 0.03, 0.05, 0.1, 0.3):
    W, b = fit_logistic(XA, LA, C)
    frames = sigmoid(F[B] @ W + b)
    for rerank in (0, 20, 50):
        evaluate(f'clip means, C{C}', frames, LB, rerank=rerank)
W, b = fit_logistic(F[A].reshape(-1, 128), [l for l in LA for _ in range(10)], 0.003)
evaluate('frames, C0.003', sigmoid(F[B] @ W + b), LB)
evaluate('frames, C0.003', sigmoid(F[B] @ W + b), LB, rerank=20)
