"""Training: state, hyper-parameters, the one training iteration and its data-parallel drivers."""
