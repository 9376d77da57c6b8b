"""The GPU suite: every GPU figure the project promises, measured in one command within a time budget.

    python -m benchmarks.gpu_suite --data DIR --out DIR [--minutes M] [--dry-run] [--sections a,b]

Sections, in order, each with a fixed share of the remaining time (runner.py):

    throughput   the paper net on GPU-resident synthetic data (fp32, bf16, channels_last, compile) at two
                 batch sizes against a plain torchvision AlexNet loop; model FLOP utilisation
    realdata     the engine's own trainer on the real photos (decoded cache, crops, flips, PCA noise on
                 the device) as a ratio to the same model on synthetic data
    towers       the two-tower split on "cuda:0,cuda:0": logits and gradients equal to one device, speed
    inference    PyTorch eager fp32 / bf16 and ONNX Runtime at batch 1, 32, 128; a JPEG file to top-5
    recipe       the paper's recipe from random weights to the end of its schedule or the section's
                 budget; centre-crop and ten-crop errors; curves as PNG
    experiments  the five experiments (relu-vs-tanh, lrn, pooling, augmentation, towers), 2+ seeds

OUT/suite.json and OUT/suite.md are rewritten after every measurement, so a killed run still leaves
what it measured; OUT/recipe-curves.png and OUT/experiments.tar.gz hold the plots and the reports.
`--dry-run` runs every section on the CPU at toy size on a generated dataset (tests/test_gpu_suite.py),
so the suite cannot rot between GPU sessions. `python -m benchmarks.gpu_suite.publish OUT` copies a
returned result into benchmarks/README.md and docs/experiments/. benchmarks/README.md says how to run
it on the device machine.

Needs only torch, torchvision, numpy, pillow, onnx, onnxscript, onnxruntime and matplotlib; never
downloads anything and never imports Qt.
"""
