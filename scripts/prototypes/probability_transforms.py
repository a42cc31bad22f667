"""The logistic model's probabilities to a power, weighted by their labels' frequency, and query expansion."""
import os, sys, numpy as np
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import *
F, L, ids = load(os.environ.get("CLIPS", "bal_train.jsonl"))
A, B, LA, LB = halves(F, L)
XA = F[A].mean(1)
W, b = fit_logistic(XA, LA, 0.05)
frames = sigmoid(F[B] @ W + b)
evaluate('plain', frames, LB); evaluate('plain', frames, LB, rerank=20)
for a in (0.5, 0.75, 1.5):
    evaluate(f'p^{a}', frames ** a, LB); evaluate(f'p^{a}', frames ** a, LB, rerank=20)
classes = sorted({l for ls in LA for l in ls})
prior = np.array([[c in ls for c in classes] for ls in LA]).mean(0)
for beta in (-0.5, -0.25, 0.25):
    evaluate(f'p x prior^{beta}', frames * prior ** beta, LB)
    evaluate(f'p x prior^{beta}', frames * prior ** beta, LB, rerank=20)
for qe in (3, 5, 10):
    evaluate('query expansion', frames, LB, rerank=20, qe=qe)
