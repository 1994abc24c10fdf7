"""The models: pure Thinc builders and the math they use.

heads (RoPE, the EGP/GP heads and pair pointers, the band layout), loss (ZLPR),
models (the registered span architectures), gplinker_model (GPLinker's),
features (the char-bigram embedding), windowing (inference on docs longer than
the encoder's window), schedules (the registered learning-rate schedule).
"""
