"""LSSL: attribute-guided expression synthesis with a landmark-heatmap side image (papers A, B).

Built so far, each tested on its own: the networks of A's Tables I-II (`networks.py`), the losses
(`losses.py`), the face parser of B's L_p with its pretraining on the renderer's part masks
(`parser.py`), the variants and hyper-parameters (`model.py`) and the training iteration
(`step.py`); the heatmap is `fergan.data.heatmaps`, which the training pipeline adds to a batch
as `s` for a method with `batch_features=("side",)`. Not yet registered as a method: the editor
with its side input, the recognition stage and the configs come next.
"""
