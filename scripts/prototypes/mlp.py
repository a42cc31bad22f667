"""A hidden layer (scikit-learn's MLPClassifier, multi-label) instead of the logistic model. Slow: minutes."""
import os, sys, numpy as np
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import *
F, L, ids = load(os.environ.get("CLIPS", "bal_train.jsonl"))
A, B, LA, LB = halves(F, L)
XA = F[A].mean(1)
from sklearn.neural_network import MLPClassifier
classes = sorted({l for ls in LA for l in ls})
Y = np.array([[c in ls for c in classes] for ls in LA]).astype(int)
m = XA.mean(0); s = XA.std(0)
for h, alpha in ((256, 1.0), (256, 3.0), (512, 3.0)):
    clf = MLPClassifier((h,), alpha=alpha, max_iter=300, random_state=0).fit((XA - m) / s, Y)
    frames = clf.predict_proba(((F[B] - m) / s).reshape(-1, 128)).reshape(len(B), 10, -1)
    evaluate(f'mlp {h} alpha {alpha}', frames, LB)
    evaluate(f'mlp {h} alpha {alpha}', frames, LB, rerank=20)
