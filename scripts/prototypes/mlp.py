import os, sys, numpy as np
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import *
from sklearn.neural_network import MLPClassifier
F, L, ids = load(os.environ.get('CLIPS', 'bal_train.jsonl'))
N = len(F)
A = np.arange(0, N, 2); B = np.arange(1, N, 2)
LA = [L[i] for i in A]; LB = [L[i] for i in B]
def evaluate(name, fr, rerank=0):
    V = normed(fr.mean(1))
    S = V @ V.T; np.fill_diagonal(S, -9)
    T = topk(S, max(10, rerank))
    if rerank:
        Fn = normed(fr)
        T = np.array([c[np.argsort(-chamfer(Fn[q], Fn[c]), kind='stable')] for q, c in enumerate(T)])
    p, n = precision(T, LB, LB)
    print(f'{name:50s} rerank {rerank:3d} P@10 {p:.4f}', flush=True)
classes = sorted({l for ls in LA for l in ls})
Y = np.array([[c in ls for c in classes] for ls in LA]).astype(int)
XA = F[A].mean(1); m = XA.mean(0); s = XA.std(0)
for h, alpha in ((256, 1.0), (256, 3.0), (512, 3.0)):
    clf = MLPClassifier((h,), alpha=alpha, max_iter=300, random_state=0).fit((XA - m) / s, Y)
    pf = clf.predict_proba(((F[B] - m) / s).reshape(-1, 128)).reshape(len(B), 10, -1)
    evaluate(f'mlp {h} a{alpha}', pf); evaluate(f'mlp {h} a{alpha}', pf, 20)
