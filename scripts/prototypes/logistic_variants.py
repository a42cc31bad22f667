"""Probabilities of the mean frame against the mean of the frames' probabilities; the re-rank on LDA frames
instead; PCA of the probabilities to 32 and 64 dimensions."""
import os, sys, numpy as np
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import *
F, L, ids = load(os.environ.get("CLIPS", "bal_train.jsonl"))
A, B, LA, LB = halves(F, L)
XA = F[A].mean(1)
W, mu = fit_lda(XA, LA, 32, 0.3)
lda_frames = (F[B] - mu) @ W
for C in (0.03, 0.1, 0.3):
    Wl, bl = fit_logistic(XA, LA, C)
    of_mean = sigmoid(F[B].mean(1) @ Wl + bl)
    frames = sigmoid(F[B] @ Wl + bl)
    evaluate(f'C{C} probabilities of the mean frame', None, LB, vec=of_mean)
    evaluate(f'C{C} sqrt of those', None, LB, vec=np.sqrt(of_mean))
    evaluate(f'C{C} mean of the frames\' probabilities', frames, LB)
    evaluate(f'C{C} mean of the frames\' probabilities', frames, LB, rerank=20)
    evaluate(f'C{C} of the mean, re-rank on LDA frames', None, LB, rerank=20, vec=of_mean, frr=lda_frames)
    pA = sigmoid(F[A] @ Wl + bl).reshape(-1, Wl.shape[1])
    mp = pA.mean(0); _, _, Vt = np.linalg.svd(pA - mp, full_matrices=False)
    for d in (32, 64):
        evaluate(f'C{C} frame probabilities, PCA {d}', (frames - mp) @ Vt[:d].T, LB)
        evaluate(f'C{C} frame probabilities, PCA {d}', (frames - mp) @ Vt[:d].T, LB, rerank=20)
