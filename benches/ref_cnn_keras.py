#!/usr/bin/env python3
"""The ref-cnn of docs/performance.md in Keras 3 on TensorFlow (CPU), printing one line in the
same format as `cargo run --release --example bench_ref_cnn`, so the three can be compared in
one run:

    python3 benches/ref_cnn_keras.py
    ref-cnn backend=keras train=<img/s> infer256=<img/s> infer1=<img/s>

Training: Adam 1e-3, batch 128, sparse categorical cross-entropy, compiled train step
(`model.train_on_batch`), after 2 warm-up steps. Inference: the compiled model called in
inference mode (batch norm with moving statistics, dropout off). Keras runs channels-last
(NHWC), its native CPU layout. LEMO_BENCH_SECONDS (default 20) bounds each measurement.
Needs `pip install tensorflow-cpu keras`.
"""
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402
import keras  # noqa: E402
from keras import layers  # noqa: E402
import tensorflow as tf  # noqa: E402


def block(x, filters):
    x = layers.Conv2D(filters, 3, padding="same")(x)
    x = layers.BatchNormalization()(x)
    return layers.ReLU()(x)


def ref_cnn(classes=100):
    inp = keras.Input((32, 32, 3))
    x = block(block(inp, 64), 64)
    x = layers.MaxPooling2D(2)(x)
    a = block(x, 128)
    x = layers.Add()([block(a, 128), a])
    x = layers.MaxPooling2D(2)(x)
    x = block(x, 256)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(0.3)(x)
    return keras.Model(inp, layers.Dense(classes)(x))


def main():
    budget = float(os.environ.get("LEMO_BENCH_SECONDS", "20"))
    keras.utils.set_random_seed(0)
    model = ref_cnn()
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert trainable == 582_308, trainable
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    rng = np.random.default_rng(0)
    x = rng.standard_normal((128, 32, 32, 3), dtype=np.float32)
    y = rng.integers(0, 100, (128,))
    for _ in range(2):
        model.train_on_batch(x, y)
    start, steps = time.perf_counter(), 0
    while steps < 3 or (time.perf_counter() - start < budget and steps < 50):
        model.train_on_batch(x, y)
        steps += 1
    train = steps * 128 / (time.perf_counter() - start)

    @tf.function(jit_compile=False)
    def predict(xb):
        return model(xb, training=False)

    def infer(batch, warmup, max_runs):
        xb = tf.constant(rng.standard_normal((batch, 32, 32, 3), dtype=np.float32))
        for _ in range(warmup):
            predict(xb).numpy()
        start, runs = time.perf_counter(), 0
        while runs < 3 or (time.perf_counter() - start < budget / 2 and runs < max_runs):
            predict(xb).numpy()
            runs += 1
        return runs * batch / (time.perf_counter() - start)

    infer256 = infer(256, 2, 40)
    infer1 = infer(1, 10, 2000)
    print(f"ref-cnn backend=keras train={train:.0f} infer256={infer256:.0f} infer1={infer1:.0f}")


if __name__ == "__main__":
    main()
