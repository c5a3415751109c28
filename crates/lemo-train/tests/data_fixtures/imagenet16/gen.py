"""Writes the ImageNet16-120 pickle fixtures used by tests/data_formats.rs.

Run with python3 and numpy: `python3 gen.py`. Each file is a dict like NAS-Bench-201's
ImageNet16 batches: 'data' = uint8 array N x 768 (channel-major 16x16 RGB), 'labels' = list of
1-based labels. Image i has every byte equal to (i * 37 + channel * 5) % 256, so the test can
check the pixels. Labels: 1, 120, 121, 1000, 7, 64 (121 and 1000 are dropped by the loader).
"""
import pickle
import numpy as np

LABELS = [1, 120, 121, 1000, 7, 64]


def batch():
    n = len(LABELS)
    data = np.zeros((n, 768), dtype=np.uint8)
    for i in range(n):
        for c in range(3):
            data[i, c * 256:(c + 1) * 256] = (i * 37 + c * 5) % 256
    return {'data': data, 'labels': list(LABELS), 'mean': np.zeros(768, dtype=np.float64)}


for proto in (0, 2, 4, 5):
    with open(f'py3_protocol{proto}.pkl', 'wb') as f:
        pickle.dump(batch(), f, protocol=proto)
# labels as a numpy int64 array instead of a list
b = batch()
b['labels'] = np.array(LABELS, dtype=np.int64)
with open('py3_protocol2_numpy_labels.pkl', 'wb') as f:
    pickle.dump(b, f, protocol=2)
