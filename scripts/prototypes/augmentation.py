"""Fitting the logistic model on each clip's half means as well as its mean."""
import os, sys, numpy as np
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import *
F, L, ids = load(os.environ.get("CLIPS", "bal_train.jsonl"))
A, B, LA, LB = halves(F, L)
XA = F[A].mean(1)
FA = F[A]
X = np.concatenate([FA.mean(1), FA[:, :5].mean(1), FA[:, 5:].mean(1)])
for C in (0.05, 0.017):
    W, b = fit_logistic(X, LA * 3, C)
    frames = sigmoid(F[B] @ W + b)
    evaluate(f'with half means, C{C}', frames, LB); evaluate(f'with half means, C{C}', frames, LB, rerank=20)
