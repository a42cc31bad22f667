"""LDA on frames rather than clip means; the re-rank mixed with the cosine; logistic logits and probabilities."""
import os, sys, numpy as np
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import *
F, L, ids = load(os.environ.get("CLIPS", "bal_train.jsonl"))
A, B, LA, LB = halves(F, L)
XA = F[A].mean(1)
W, mu = fit_lda(XA, LA, 32, 0.3)
evaluate('lda32', (F[B] - mu) @ W, LB)
for lam in (0.5, 1.0, 2.0):
    evaluate(f'lda32, chamfer + {lam} x cosine', (F[B] - mu) @ W, LB, rerank=50, lam=lam)
evaluate('lda32', (F[B] - mu) @ W, LB, rerank=20, qe=5)
FA = F[A].reshape(-1, 128); LFA = [l for l in LA for _ in range(10)]
for d, r in ((32, 0.3), (32, 0.1), (48, 0.1), (64, 0.1)):
    Wf, muf = fit_lda(FA, LFA, d, r)
    evaluate(f'frame-lda{d} r{r}', (F[B] - muf) @ Wf, LB)
    evaluate(f'frame-lda{d} r{r}', (F[B] - muf) @ Wf, LB, rerank=20)
for C in (0.01, 0.1, 1.0):
    W, b = fit_logistic(XA, LA, C, minsup=3)
    logits = F[B] @ W + b
    evaluate(f'logistic C{C} logits', logits, LB)
    evaluate(f'logistic C{C} logits centred', F[B] @ W - (XA @ W).mean(0), LB)
    evaluate(f'logistic C{C} probabilities', sigmoid(logits), LB)
