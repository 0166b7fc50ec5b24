"""fergan's data layer: TFDS builders, subject-independent folds and the grain training pipeline.

Modules: `face_renderer` (procedural faces and their landmarks), `preprocess`, `align` (68-point
landmark alignment), `dlib_landmarks` (optional), `builders` (TFDS, one module per database),
`folds`, `pipeline` (check_data, build_datasets, make_train_iterator, eval_arrays),
`separability`, `heatmaps` (landmark heatmaps and the joint face flip).
"""
